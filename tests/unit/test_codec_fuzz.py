"""Bad input, fuzzed (hypothesis): every outbox payload is either encoded exactly (decoding the message gives
back each payload value, converted as the contract says) or refused as PoisonEvent with a reason naming the
problem; never another exception, never a value rounded or truncated on the way."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract.codec import Codec, PoisonEvent
from pipeline.contract.rows import OutboxRow

CODEC = Codec()
STREAMS = {stream.aggregate_type: stream.latest for stream in CODEC.streams.values()}
AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Values that break something somewhere: wrong types, non-finite floats, integers at and beyond 32 and 64
# bits, huge and hostile text (NUL, lone surrogates, right-to-left marks), deep nesting.
HOSTILE_TEXT = st.sampled_from(["", "\x00", "a\x00b", "\ud800", "\u202e", "'; DROP TABLE orders; --", "é" * 3])
DEEP = st.recursive(
    st.none() | st.integers(),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=30,
)
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    HOSTILE_TEXT,
    st.just("x" * 2_000_000),
    st.sampled_from(["2026-11-25T10:00:00+00:00", "2026-11-25", "yesterday", "9999-12-31T23:59:59.999999+00:00"]),
    st.uuids().map(str),
    DEEP,
    st.lists(st.text(max_size=5), max_size=5),
)


def valid_value(avro_type: Any) -> Any:
    """A valid payload value for a field type (what the triggers write)."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    branch = next(b for b in branches if b != "null")
    logical = branch.get("logicalType") if isinstance(branch, dict) else None
    name = branch["type"] if isinstance(branch, dict) else branch
    if logical == "timestamp-millis":
        return "2026-11-25T10:00:00.123456+00:00"
    if logical == "uuid":
        return "6d1e1a4e-32c3-4b7a-9f0e-1f8b8d6f1c11"
    return {"string": "Berlin", "long": 42, "int": 7, "double": 52.5, "boolean": True, "array": ["thai"]}[name]


def valid_payload(aggregate_type: str) -> dict[str, Any]:
    schema = STREAMS[aggregate_type]
    return {f["name"]: valid_value(f["type"]) for f in schema.raw["fields"] if f["name"] in schema.payload_fields}


def row(aggregate_type: str, payload_text: str) -> OutboxRow:
    return OutboxRow(
        position=1,
        event_id=str(uuid.UUID(int=1)),
        aggregate_type=aggregate_type,
        aggregate_id="agg-1",
        event_type="Fuzzed",
        payload=payload_text,
        schema_version=STREAMS[aggregate_type].version,
        txid=9,
        occurred_at=AT,
    )


def expected(avro_type: Any, value: Any) -> Any:
    """What decoding must give back for a payload value the codec accepted."""
    if value is None:
        return None
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    logical = {b.get("logicalType") for b in branches if isinstance(b, dict)}
    if "timestamp-millis" in logical:
        moment = datetime.fromisoformat(value)
        return _EPOCH + (moment - _EPOCH) // timedelta(milliseconds=1) * timedelta(milliseconds=1)
    if "uuid" in logical:
        return uuid.UUID(value) if not isinstance(value, uuid.UUID) else value
    if "double" in branches and type(value) is int:
        return float(value)
    return value


def assert_exact_or_poison(aggregate_type: str, payload_text: str) -> None:
    try:
        message = CODEC.encode(row(aggregate_type, payload_text))
    except PoisonEvent as exc:
        reason = str(exc)
        assert reason and "\n" not in reason, "a poison reason is one non-empty line"
        return
    decoded = CODEC.decode(message.value, aggregate_type, STREAMS[aggregate_type].version)
    payload = json.loads(payload_text)
    for field in STREAMS[aggregate_type].raw["fields"]:
        name = field["name"]
        if name not in STREAMS[aggregate_type].payload_fields:
            continue
        want = expected(field["type"], payload.get(name, field.get("default")))
        got = decoded[name]
        if isinstance(got, uuid.UUID) or isinstance(want, uuid.UUID):
            got, want = str(got), str(want)
        assert got == want, f"{name}: encoded {got!r}, payload said {want!r}"
        if isinstance(got, float):
            assert math.isfinite(got), f"{name}: a non-finite double was published"


AGGREGATES = st.sampled_from(sorted(STREAMS))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(aggregate_type=AGGREGATES, data=st.data())
def test_one_field_replaced_by_anything(aggregate_type: str, data: st.DataObject) -> None:
    payload = valid_payload(aggregate_type)
    name = data.draw(st.sampled_from(sorted(payload)))
    payload[name] = data.draw(HOSTILE)
    assert_exact_or_poison(aggregate_type, json.dumps(payload, allow_nan=True))


@FUZZ
@given(aggregate_type=AGGREGATES, data=st.data())
def test_fields_missing_and_unknown_keys(aggregate_type: str, data: st.DataObject) -> None:
    payload = valid_payload(aggregate_type)
    for name in data.draw(st.lists(st.sampled_from(sorted(payload)), max_size=3, unique=True)):
        del payload[name]
    extra = data.draw(st.dictionaries(st.text(min_size=1, max_size=20), HOSTILE, max_size=2))
    payload.update(extra)
    assert_exact_or_poison(aggregate_type, json.dumps(payload, allow_nan=True))


@FUZZ
@given(
    aggregate_type=AGGREGATES,
    text=st.one_of(
        st.text(max_size=200), st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", errors="surrogateescape"))
    ),
)
def test_any_payload_text(aggregate_type: str, text: str) -> None:
    """Not even JSON, invalid UTF-8 smuggled in as surrogates, a JSON array or scalar."""
    try:
        json.loads(text)
        is_json = True
    except ValueError:
        is_json = False
    try:
        CODEC.encode(row(aggregate_type, text))
    except PoisonEvent as exc:
        assert str(exc)
    else:
        assert is_json, "a payload that is not JSON was published"


@FUZZ
@given(value=st.integers())
def test_integers_of_any_size_are_exact_or_poison(value: int) -> None:
    payload = valid_payload("order")
    payload["total_cents"] = value
    # Text as PostgreSQL's jsonb writes it: the digits, whatever their count.
    assert_exact_or_poison("order", json.dumps(payload))


@FUZZ
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_non_finite_doubles_never_published(value: float) -> None:
    payload = valid_payload("order")
    payload["delivery_lat"] = value
    assert_exact_or_poison("order", json.dumps(payload, allow_nan=True))


@FUZZ
@given(depth=st.sampled_from([10, 1_000, 100_000]), aggregate_type=AGGREGATES)
def test_deep_nesting_is_poison_not_a_recursion_error(depth: int, aggregate_type: str) -> None:
    payload = valid_payload(aggregate_type)
    text = json.dumps(payload)[:-1] + ', "nested": ' + "[" * depth + "]" * depth + "}"
    assert_exact_or_poison(aggregate_type, text)
