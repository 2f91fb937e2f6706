"""Confluent's wire format as the relay writes it, as pure code: the header, the id looked up once per version
through a fake registry, a registry that cannot answer failing the batch before anything is sent, and the
contract rule that tells unframed (pre-switch) messages from framed ones by their first byte."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.registry import Registered, RegistryError
from pipeline.analytics.tables import DECODER_CLASS, desired_specs
from pipeline.config import load_settings
from pipeline.contract.codec import WIRE_HEADER_BYTES, Codec, ContractError, SchemaVersion, unframed, wire_header
from pipeline.contract.rows import OutboxRow
from pipeline.contract.subjects import SchemaIdUnavailable, registered_ids, schema_text, subject_name
from pipeline.outbox.batch import encode_batch
from pipeline.resources import AVRO_SCHEMAS, PINOT
from tests.unit.test_avro_schemas import driver_row


class FakeRegistry:
    """Answers `lookup` from a dict of (subject, schema text) -> Registered; counts the calls."""

    def __init__(self, held: dict[tuple[str, str], Registered], error: str | None = None) -> None:
        self.held = held
        self.error = error
        self.calls = 0

    def lookup(self, subject: str, schema: str) -> Registered | None:
        self.calls += 1
        if self.error:
            raise RegistryError(self.error)
        return self.held.get((subject, schema))


def registry_holding(codec: Codec, schema_id: int = 42) -> FakeRegistry:
    return FakeRegistry(
        {
            (subject_name(stream.topic), schema_text(version)): Registered(version.version, schema_id)
            for stream in codec.streams.values()
            for version in stream.versions.values()
        }
    )


def test_the_header_is_magic_byte_zero_and_the_id_big_endian() -> None:
    assert wire_header(1) == b"\x00\x00\x00\x00\x01"
    assert wire_header(0x01020304) == b"\x00\x01\x02\x03\x04"


def test_a_framed_value_is_the_header_then_the_same_avro_binary() -> None:
    registry = registry_holding(Codec(), schema_id=258)
    framed = Codec(schema_id=registered_ids(registry)).encode(driver_row())
    plain = Codec().encode(driver_row())
    assert framed.value == b"\x00\x00\x00\x01\x02" + plain.value
    assert framed.headers == plain.headers
    assert unframed(framed.value) == unframed(plain.value) == plain.value
    assert Codec().decode(framed.value, "driver", 1) == Codec().decode(plain.value, "driver", 1)


def test_the_id_is_looked_up_once_per_version_not_per_event() -> None:
    registry = registry_holding(Codec())
    codec = Codec(schema_id=registered_ids(registry))
    rows = [replace(driver_row(), position=position) for position in range(100)]
    encoded = encode_batch(rows, codec.encode, 1_000_000)
    assert len(encoded.to_send) == 100 and not encoded.poison
    assert registry.calls == 1
    assert {message.value[:5] for _, message in encoded.to_send} == {wire_header(42)}


def test_a_registry_that_does_not_answer_fails_the_batch_and_caches_nothing() -> None:
    registry = registry_holding(Codec())
    registry.error = "Connection refused"
    codec = Codec(schema_id=registered_ids(registry))
    with pytest.raises(SchemaIdUnavailable, match="schema registry: Connection refused"):
        encode_batch([driver_row()], codec.encode, 1_000_000)  # raised, not dead-lettered: nothing is lost
    assert codec.routes == {}
    registry.error = None  # the next try, once the registry is back
    assert codec.encode(driver_row()).value[:5] == wire_header(42)


def test_a_version_the_registry_does_not_hold_is_unavailable_not_poison() -> None:
    codec = Codec(schema_id=registered_ids(FakeRegistry({})))
    with pytest.raises(SchemaIdUnavailable, match=r"nibble.drivers-value does not hold .*run `nibble schemas apply`"):
        codec.encode(driver_row())


def test_a_subject_holding_the_schema_under_another_version_number_is_refused() -> None:
    codec = Codec()
    stream = codec.streams["driver"]
    registry = FakeRegistry({(subject_name(stream.topic), schema_text(stream.versions[1])): Registered(2, 7)})
    with pytest.raises(SchemaIdUnavailable):
        Codec(schema_id=registered_ids(registry)).encode(driver_row())


# --- the contract rule behind the decoder's fallback to unframed messages -----------------------------------


@pytest.mark.parametrize("path", sorted(AVRO_SCHEMAS.glob("*/v*.avsc")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_schema_starts_with_the_uuid_event_id(path: Path) -> None:
    """A uuid's text is 36 characters, so an unframed message starts with its length (zigzag 72 = 0x48),
    never with the wire format's magic byte 0."""
    first = json.loads(path.read_text())["fields"][0]
    assert first == {**first, "name": "event_id", "type": {"type": "string", "logicalType": "uuid"}}
    SchemaVersion.load(path)


def test_an_unframed_message_never_starts_with_the_magic_byte() -> None:
    value = Codec().encode(driver_row()).value
    assert value[0] == 0x48


def test_a_schema_not_starting_with_event_id_is_refused(tmp_path: Path) -> None:
    raw = json.loads((AVRO_SCHEMAS / "drivers" / "v1.avsc").read_text())
    raw["fields"] = raw["fields"][1:] + raw["fields"][:1]
    path = tmp_path / "v1.avsc"
    path.write_text(json.dumps(raw))
    with pytest.raises(ContractError, match="the first field must be the string event_id"):
        SchemaVersion.load(path)


def test_every_table_gets_the_wire_format_decoder_from_desired_specs(tmp_path: Path) -> None:
    """Set in one place for every table file, a new one without any decoder line included."""
    pinot = tmp_path / "pinot"
    shutil.copytree(PINOT, pinot, ignore=shutil.ignore_patterns("decoder"))
    for table_file in (pinot / "tables").glob("*.json"):
        table = json.loads(table_file.read_text())
        stream = table["tableIndexConfig"]["streamConfigs"]
        for key in [key for key in stream if key.startswith("stream.kafka.decoder.")]:
            del stream[key]
        table_file.write_text(json.dumps(table))
    settings = load_settings()
    codec = Codec()
    specs = desired_specs(settings, pinot)
    assert {spec.name for spec in specs} == {path.stem for path in (PINOT / "tables").glob("*.json")}
    for spec in specs:
        stream = spec.table["tableIndexConfig"]["streamConfigs"]
        versions = codec.stream_for_topic(stream["stream.kafka.topic.name"]).versions
        assert stream["stream.kafka.decoder.class.name"] == DECODER_CLASS
        assert stream["stream.kafka.decoder.prop.schema.registry.url"] == settings.endpoints.pinot_schema_registry_url
        assert json.loads(stream["stream.kafka.decoder.prop.schema"]) == versions[max(versions)].raw
        assert json.loads(stream["stream.kafka.decoder.prop.unframed.writer.schema"]) == versions[1].raw


# --- a fixed vector: the relay's hot path may change, the bytes of an event may not ---------------------------

ORDER_PAYLOAD = (
    '{"city": "Berlin", "status": "placed", "cuisine": "thai", "user_id": "c7468db0-1f24-42ab-a022-c0aa59c2894e", '
    '"currency": "USD", "order_id": "133f475e-3bf4-40c5-bde8-74a1c5ee64d4", '
    '"placed_at": "2026-12-02T17:18:24.932879+00:00", "tip_cents": 100, "item_count": 2, '
    '"updated_at": "2026-12-02T17:18:24.932879+00:00", "promised_at": "2026-12-02T17:53:24.932879+00:00", '
    '"total_cents": 2599, "delivery_lat": 52.52, "delivery_lon": 13.4, "cancel_reason": null, '
    '"restaurant_id": "f57dd72c-b7fd-403e-9288-932de9993ff3", "payment_status": null, "subtotal_cents": 2250, '
    '"restaurant_name": "Bench Bistro", "delivery_fee_cents": 249}'
)
# Written by the codec at commit bdf1a0e (before the hot-path changes of issue 25), for schema id 0x0102A3.
ORDER_VALUE = bytes.fromhex(
    "00000102a34863656132383035372d313237332d343335312d613435662d373363303638623232356364164f72646572506c6163"
    "656488959efcc6688012044831333366343735652d336266342d343063352d626465382d37346131633565653634643448633734"
    "36386462302d316632342d343261622d613032322d6330616135396332383934654866353764643732632d623766642d34303365"
    "2d393238382d3933326465393939336666331842656e63682042697374726f0c4265726c696e08746861690c706c616365640494"
    "23f203c801ce28065553440000c3f5285c8f424a40cdcccccccccc2a40c8fa9dfcc6680288a79efec668c8fa9dfcc668"
)


@pytest.mark.parametrize("zone", [UTC, ZoneInfo("Etc/UTC"), ZoneInfo("Asia/Kolkata")], ids=str)
def test_an_order_event_is_the_same_message_as_before(zone: tzinfo) -> None:
    """Whatever time zone the claim's timestamps come in (the session's), the same instant, the same bytes."""
    occurred_at = datetime(2026, 12, 2, 17, 18, 26, 628408, tzinfo=UTC).astimezone(zone)
    row = OutboxRow(
        2,
        "cea28057-1273-4351-a45f-73c068b225cd",
        "order",
        "133f475e-3bf4-40c5-bde8-74a1c5ee64d4",
        "OrderPlaced",
        ORDER_PAYLOAD,
        1,
        1152,
        occurred_at,
    )
    framed = Codec("nibble-test.", schema_id=lambda _stream, _version: 0x0102A3).encode(row)
    assert framed.topic == "nibble-test.nibble.orders"
    assert framed.key == b"133f475e-3bf4-40c5-bde8-74a1c5ee64d4"
    assert framed.value == ORDER_VALUE
    assert framed.headers == [
        ("event_id", b"cea28057-1273-4351-a45f-73c068b225cd"),
        ("event_type", b"OrderPlaced"),
        ("schema", b"nibble.events.OrderEvent"),
        ("schema_version", b"1"),
        ("occurred_at", b"1796231906628"),
        ("source_txid", b"1152"),
    ]
    assert Codec("nibble-test.").encode(row).value == ORDER_VALUE[WIRE_HEADER_BYTES:]
