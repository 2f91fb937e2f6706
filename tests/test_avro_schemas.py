"""The Avro contracts: every version readable, BACKWARD compatible with the one before, and matching
what the outbox triggers write (pure logic: no service needed)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.avro_codec import SCHEMAS_DIR, Codec, OutboxRow, PoisonEvent
from pipeline.schema_compat import backward_incompatibilities

STREAM_DIRS = sorted(p for p in SCHEMAS_DIR.iterdir() if p.is_dir())


def versions(stream_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(stream_dir.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))]


@pytest.mark.parametrize("stream_dir", STREAM_DIRS, ids=lambda p: p.name)
def test_every_version_is_backward_compatible_with_the_previous_one(stream_dir: Path) -> None:
    history = versions(stream_dir)
    assert history, f"{stream_dir} has no v1.avsc"
    for old, new in itertools.pairwise(history):
        assert backward_incompatibilities(new, old) == []


def test_the_check_catches_a_new_field_without_default() -> None:
    old = json.loads((SCHEMAS_DIR / "drivers" / "v1.avsc").read_text())
    added_required = {**old, "fields": [*old["fields"], {"name": "rating", "type": "double"}]}
    added_optional = {
        **old,
        "fields": [*old["fields"], {"name": "rating", "type": ["null", "double"], "default": None}],
    }
    assert backward_incompatibilities(added_required, old) == ["field 'rating' is new and has no default"]
    assert backward_incompatibilities(added_optional, old) == []


def test_the_check_catches_an_incompatible_type_change() -> None:
    old = json.loads((SCHEMAS_DIR / "drivers" / "v1.avsc").read_text())
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
        payload={k: v for k, v in payload.items() if v is not ...},
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
