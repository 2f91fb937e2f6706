"""The codec's own Avro writers produce exactly fastavro's bytes for every checked-in schema, and refuse
what does not fit (pure logic: no service needed)."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from pipeline.contract.codec import Codec, PoisonEvent
from pipeline.contract.rows import OutboxRow
from pipeline.contract.writers import Misfit, UnsupportedSchema, field_writer

CODEC = Codec()
VERSIONS = [(stream, version) for stream in CODEC.streams.values() for version in stream.versions.values()]
AT = datetime(2026, 11, 24, 18, 0, 0, 123456, tzinfo=UTC)


def sample(avro_type: Any, variant: int) -> tuple[Any, Any]:
    """(JSON payload value, the Avro datum fastavro is given) for one field type; variants differ."""
    if isinstance(avro_type, list):  # ["null", X]: null on even variants
        return (None, None) if variant % 2 == 0 else sample(avro_type[1], variant)
    if isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-millis":
        moment = AT + timedelta(days=variant * 400, microseconds=variant * 999)
        return moment.isoformat(), moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if isinstance(avro_type, dict) and avro_type["type"] == "array":
        items = ["thai", "vegan", "ünïcode"][: variant % 4]
        return items, items
    if isinstance(avro_type, dict) and avro_type.get("logicalType") == "uuid":  # canonical text only
        value = f"8c1f9a8e-2f3c-4a5e-9b9f-0c1b2d3e4f{variant % 256:02x}"
        return value, value
    primitive = avro_type
    values = {
        "string": ["", "Bench Bistro", "ü" * 70, "8c1f9a8e-2f3c-4a5e-9b9f-0c1b2d3e4f50"],
        "long": [0, -1, 2**63 - 1, -(2**63), 63, 64, -65, 1_764_000_000_000],
        "int": [0, -1, 2**31 - 1, -(2**31), 127],
        "double": [0.0, -1.5, 52.52, 1e300, 13],
        "boolean": [True, False],
    }[primitive]
    value = values[variant % len(values)]
    return value, (float(value) if primitive == "double" else value)


@pytest.mark.parametrize("variant", range(8))
@pytest.mark.parametrize(("stream", "schema"), VERSIONS, ids=lambda v: getattr(v, "full_name", ""))
def test_bytes_equal_fastavros_for_every_schema(stream, schema, variant: int) -> None:
    payload, datum = {}, {}
    for field in schema.raw["fields"]:
        if field["name"] not in ("event_id", "event_type", "occurred_at", "source_txid", "outbox_position"):
            payload[field["name"]], datum[field["name"]] = sample(field["type"], variant + len(payload))
    row = OutboxRow(
        2**40 + variant,
        "0b6b2f55-1d5c-4d7e-8a5c-3b8f7e9d2a11",
        stream.aggregate_type,
        "7a0c3e1d-2b4f-4c6a-8d9e-0f1a2b3c4d5e",
        "Changed",
        json.dumps(payload),
        schema.version,
        4242,
        AT,
    )
    datum.update(
        event_id=row.event_id, event_type="Changed", occurred_at=AT, source_txid=4242, outbox_position=row.position
    )
    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, schema.parsed, datum)
    assert CODEC.encode(row).value == expected.getvalue()


@pytest.mark.parametrize(
    ("avro_type", "value", "error"),
    [
        ("double", 2**53 + 1, "x = 9007199254740993 does not fit a double exactly"),
        ("double", 10**400, "does not fit a double exactly"),
        ("double", "1.5", "x is '1.5' (str), expected float"),
        ("long", True, "x is True (bool), expected int"),
        ("long", 12.5, "x is 12.5 (float), expected int"),
        ("int", 2**31, "x = 2147483648 exceeds 32 bits"),
        ({"type": "array", "items": "string"}, "ab", "x is 'ab' (str), expected list"),
        ({"type": "array", "items": "string"}, ["a", 1], "must be string on field x"),
        ({"type": "long", "logicalType": "timestamp-millis"}, "2026-11-24T18:00:00", "can't subtract"),
        ({"type": "long", "logicalType": "timestamp-millis"}, 1_764_000_000_000, "argument must be str"),
        (["null", "boolean"], "yes", "x is 'yes' (str), expected NoneType or bool"),
    ],
)
def test_values_that_do_not_fit_are_refused(avro_type: Any, value: Any, error: str) -> None:
    with pytest.raises(Misfit, match=re.escape(error)):
        field_writer("x", avro_type)(bytearray(), value)


def test_a_type_the_writers_do_not_cover_is_refused_at_load() -> None:
    with pytest.raises(UnsupportedSchema, match=r"field x: Avro type .*map"):
        field_writer("x", {"type": "map", "values": "string"})


def test_a_payload_missing_required_fields_is_poison() -> None:
    row = OutboxRow(1, "0b6b2f55-1d5c-4d7e-8a5c-3b8f7e9d2a11", "driver", "x", "E", '{"driver_id": 5}', 1, 1, AT)
    with pytest.raises(PoisonEvent, match=re.escape("payload lacks required fields of nibble.events.DriverEvent v1")):
        CODEC.encode(row)
