"""The Avro contracts: every version readable, BACKWARD compatible with the one before, and matching
what the outbox triggers write (pure logic: no service needed)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.contract.codec import Codec, PoisonEvent, parse_payload
from pipeline.contract.compat import backward_incompatibilities
from pipeline.contract.rows import OutboxRow
from pipeline.resources import AVRO_SCHEMAS
from tests.support.payloads import order_payload

STREAM_DIRS = sorted(p for p in AVRO_SCHEMAS.iterdir() if p.is_dir())


def versions(stream_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(stream_dir.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))]


@pytest.mark.parametrize("stream_dir", STREAM_DIRS, ids=lambda p: p.name)
def test_every_version_is_backward_compatible_with_the_previous_one(stream_dir: Path) -> None:
    history = versions(stream_dir)
    assert history, f"{stream_dir} has no v1.avsc"
    for old, new in itertools.pairwise(history):
        assert backward_incompatibilities(new, old) == []


def test_the_check_catches_a_new_field_without_default() -> None:
    old = json.loads((AVRO_SCHEMAS / "drivers" / "v1.avsc").read_text())
    added_required = {**old, "fields": [*old["fields"], {"name": "rating", "type": "double"}]}
    added_optional = {
        **old,
        "fields": [*old["fields"], {"name": "rating", "type": ["null", "double"], "default": None}],
    }
    assert backward_incompatibilities(added_required, old) == ["field 'rating' is new and has no default"]
    assert backward_incompatibilities(added_optional, old) == []


def test_the_check_catches_an_incompatible_type_change() -> None:
    old = json.loads((AVRO_SCHEMAS / "drivers" / "v1.avsc").read_text())
    changed = {
        **old,
        "fields": [f if f["name"] != "is_active" else {**f, "type": "int"} for f in old["fields"]],
    }
    assert backward_incompatibilities(changed, old) != []


def driver_row(**payload_changes: object) -> OutboxRow:
    payload = {
        "driver_id": "6d1e1a4e-32c3-4b7a-9f0e-1f8b8d6f1c11",
        "city": "Berlin",
        "vehicle_type": "bicycle",
        "status": "available",
        "is_active": True,
        "updated_at": "2026-11-24T18:00:00.123456+00:00",
        **payload_changes,
    }
    return OutboxRow(
        position=7,
        event_id="0b6b2f55-1d5c-4d7e-8a5c-3b8f7e9d2a10",
        aggregate_type="driver",
        aggregate_id=payload["driver_id"],
        event_type="DriverStatusChanged",
        payload=json.dumps({k: v for k, v in payload.items() if v is not ...}),
        schema_version=1,
        txid=4242,
        occurred_at=datetime(2026, 11, 24, 18, 0, 0, 500000, tzinfo=UTC),
    )


def test_encode_round_trips_the_envelope_and_payload() -> None:
    codec = Codec()
    message = codec.encode(driver_row())
    assert message.topic == "nibble.drivers"
    assert message.key == b"6d1e1a4e-32c3-4b7a-9f0e-1f8b8d6f1c11"
    assert dict(message.headers)["schema"] == b"nibble.events.DriverEvent"
    record = codec.decode(message.value, "driver", 1)
    assert record["outbox_position"] == 7 and record["source_txid"] == 4242
    assert record["updated_at"] == datetime(2026, 11, 24, 18, 0, 0, 123000, tzinfo=UTC)
    assert record["occurred_at"] == datetime(2026, 11, 24, 18, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"shoe_size": 44}, "payload keys not in nibble.events.DriverEvent v1: ['shoe_size']"),
        ({"city": ...}, "payload lacks required fields of nibble.events.DriverEvent v1: ['city']"),
        ({"is_active": "yes"}, "DriverEvent v1: is_active is 'yes' (str), expected bool"),
        ({"status": None}, "does not fit nibble.events.DriverEvent v1: must be string on field status"),
        ({"updated_at": "yesterday"}, "does not fit nibble.events.DriverEvent v1: Invalid isoformat"),
    ],
)
def test_schema_mismatches_are_poison_with_a_clear_error(change: dict, error: str) -> None:
    with pytest.raises(PoisonEvent, match=re.escape(error)):
        Codec().encode(driver_row(**change))


def test_an_unknown_schema_version_is_poison() -> None:
    row = driver_row()
    with pytest.raises(PoisonEvent, match=re.escape("no Avro schema nibble.drivers v9")):
        Codec().encode(OutboxRow(**{**row.__dict__, "schema_version": 9}))


def test_payload_numbers_parse_exactly_or_not_at_all() -> None:
    assert parse_payload('{"total_cents": 9007199254740993, "lat": 52.52}') == {
        "total_cents": 9007199254740993,  # 2**53 + 1: a float would have rounded it
        "lat": 52.52,
    }
    with pytest.raises(PoisonEvent, match="payload is not parseable JSON"):
        parse_payload('{"total_cents": 1e400}')  # valid jsonb (numeric), beyond any double
    with pytest.raises(PoisonEvent, match="payload is a JSON list, not an object"):
        parse_payload("[1, 2]")


def order_row(**payload_changes: object) -> OutboxRow:
    order_id = "7a0c3e1d-2b4f-4c6a-8d9e-0f1a2b3c4d5e"
    at = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
    payload = order_payload(
        order_id,
        at,
        user_id="1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0",
        restaurant_id="2c3d4e5f-6071-4283-94a5-b6c7d8e9f0a1",
        delivery_lat=52.52,
        delivery_lon=13,  # JSON writes 13.0 as 13: widened to a double
        **payload_changes,
    )
    return OutboxRow(
        1, "0b6b2f55-1d5c-4d7e-8a5c-3b8f7e9d2a11", "order", order_id, "OrderPlaced", json.dumps(payload), 1, 1, at
    )


def test_an_order_round_trips_with_exact_cents() -> None:
    codec = Codec()
    record = codec.decode(codec.encode(order_row(total_cents=2**62 + 1)).value, "order", 1)
    assert record["total_cents"] == 2**62 + 1 and record["delivery_lon"] == 13.0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"total_cents": 2**63}, "OrderEvent v1: total_cents = 9223372036854775808 exceeds 64 bits"),
        ({"item_count": 2**31}, "OrderEvent v1: item_count = 2147483648 exceeds 32 bits"),
        ({"total_cents": 25.99}, "total_cents is 25.99 (float), expected int"),  # money in cents, never a float
        # Beyond 64 bits the JSON parser yields a float: rejected, never rounded into a long.
        (parse_payload('{"total_cents": 123456789012345678901234567890}'), "total_cents is 1.2345678901234568e+29"),
    ],
)
def test_numbers_that_do_not_fit_a_field_are_poison(change: dict, error: str) -> None:
    with pytest.raises(PoisonEvent, match=re.escape(error)):
        Codec().encode(order_row(**change))
