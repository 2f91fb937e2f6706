"""The Avro contracts of avro_schemas/ and the outbox row -> Kafka message conversion (docs/events.md).

Values are plain schemaless Avro binary written with the schema version the outbox row names; consumers
find that version in the `schema` and `schema_version` headers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import orjson

from pipeline.outbox.store import OutboxRow
from pipeline.resources import AVRO_SCHEMAS

ENVELOPE_FIELDS = ("event_id", "event_type", "occurred_at", "source_txid", "outbox_position")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


class PoisonEvent(Exception):
    """This one event can never be published as it is; the message says why."""


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        """Key and value bytes; the headers add a bounded ~200 bytes the producer's limit leaves room for."""
        return len(self.key) + len(self.value)


def parse_payload(text: str) -> dict[str, Any]:
    """An outbox payload (jsonb as text) as a dict. Integers stay exact ints up to 64 bits; anything beyond
    becomes a float, which the codec's type checks reject for every integer field, so no value is rounded
    silently. A payload that does not parse (e.g. 1e400, valid jsonb) is poison, not a relay crash."""
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PoisonEvent(f"payload is not parseable JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise PoisonEvent(f"payload is a JSON {type(payload).__name__}, not an object")
    return payload


def _millis(value: str | None) -> int | None:
    if value is None:
        return None
    return (datetime.fromisoformat(value) - _EPOCH) // _MILLISECOND


def _double(value: Any) -> Any:
    # JSON writes 52.0 as 52: widen ints, leave anything else for the type check to reject.
    return float(value) if type(value) is int else value


# fastavro is lax for these: it writes 12.5 into a long as 12, "yes" into a boolean as true and a string
# into an array of strings as its characters. The codec checks their exact Python type before writing;
# strings and timestamps need no check (fastavro and the conversion reject anything else).
_LAX_TYPES = {"long": int, "int": int, "double": float, "float": float, "boolean": bool, "array": list}


def _lax_types(avro_type: Any) -> tuple[type, ...] | None:
    """The exact Python types a lax field's datum may have once converted, or None for other fields."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    names = [branch["type"] if isinstance(branch, dict) else branch for branch in branches]
    logical = [b.get("logicalType") for b in branches if isinstance(b, dict)]
    if "timestamp-millis" in logical or not any(name in _LAX_TYPES for name in names):
        return None
    return tuple(type(None) if name == "null" else _LAX_TYPES[name] for name in names)


def _int_bits(avro_type: Any) -> int | None:
    """32 or 64 for an int or long field (fastavro writes any Python int into either, so the codec checks
    the range: a Java reader would fail on, or misread, an int of more than 32 bits), else None."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    if "int" in branches:
        return 32
    if "long" in branches:
        return 64
    return None


def _converter(avro_type: Any) -> Callable[[Any], Any] | None:
    """How a payload value (JSON) becomes the Avro datum for a field, or None when it passes as is."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    for branch in branches:
        if isinstance(branch, dict) and branch.get("logicalType") == "timestamp-millis":
            return _millis
        if branch == "double":
            return _double
    return None


@dataclass(frozen=True)
class SchemaVersion:
    full_name: str
    version: int
    raw: dict[str, Any]
    parsed: Any
    payload_fields: frozenset[str]
    required_fields: frozenset[str]
    converters: tuple[tuple[str, Callable[[Any], Any]], ...]
    types: tuple[tuple[str, tuple[type, ...]], ...]
    int_ranges: tuple[tuple[str, int], ...]

    @classmethod
    def load(cls, path: Path) -> SchemaVersion:
        raw = json.loads(path.read_text())
        fields = [f for f in raw["fields"] if f["name"] not in ENVELOPE_FIELDS]
        converters = tuple((f["name"], c) for f in fields if (c := _converter(f["type"])) is not None)
        return cls(
            full_name=f"{raw['namespace']}.{raw['name']}",
            version=int(path.stem.removeprefix("v")),
            raw=raw,
            parsed=fastavro.parse_schema(raw),
            payload_fields=frozenset(f["name"] for f in fields),
            required_fields=frozenset(f["name"] for f in fields if "default" not in f),
            converters=converters,
            types=tuple((f["name"], allowed) for f in fields if (allowed := _lax_types(f["type"])) is not None),
            int_ranges=tuple((f["name"], bits) for f in fields if (bits := _int_bits(f["type"])) is not None),
        )

    def record(self, row: OutboxRow) -> dict[str, Any]:
        payload = parse_payload(row.payload)
        keys = payload.keys()
        if not keys <= self.payload_fields:
            raise PoisonEvent(
                f"payload keys not in {self.full_name} v{self.version}: {sorted(keys - self.payload_fields)}"
            )
        if not self.required_fields <= keys:
            missing = sorted(self.required_fields - keys)
            raise PoisonEvent(f"payload lacks required fields of {self.full_name} v{self.version}: {missing}")
        record = dict(payload)
        for name, convert in self.converters:
            record[name] = convert(record.get(name))
        for name, allowed in self.types:
            if type(value := record.get(name)) not in allowed:
                raise PoisonEvent(
                    f"does not fit {self.full_name} v{self.version}: {name} is {value!r} "
                    f"({type(value).__name__}), expected {' or '.join(t.__name__ for t in allowed)}"
                )
        for name, bits in self.int_ranges:
            if type(value := record.get(name)) is int and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
                raise PoisonEvent(
                    f"does not fit {self.full_name} v{self.version}: {name} = {value} exceeds {bits} bits"
                )
        record["event_id"] = row.event_id
        record["event_type"] = row.event_type
        record["occurred_at"] = (row.occurred_at - _EPOCH) // _MILLISECOND
        record["source_txid"] = row.txid
        record["outbox_position"] = row.position
        return record


@dataclass(frozen=True)
class Stream:
    aggregate_type: str
    topic: str
    versions: dict[int, SchemaVersion]

    @property
    def latest(self) -> SchemaVersion:
        return self.versions[max(self.versions)]


class Codec:
    """Turns outbox rows into Kafka messages; one instance per relay, schemas parsed once."""

    def __init__(self, topic_prefix: str = "", schemas_dir: Path = AVRO_SCHEMAS) -> None:
        registry = json.loads((schemas_dir / "streams.json").read_text())
        self.streams = {
            aggregate_type: Stream(
                aggregate_type=aggregate_type,
                topic=topic_prefix + entry["topic"],
                versions={
                    (version := SchemaVersion.load(path)).version: version
                    for path in sorted((schemas_dir / entry["schema_dir"]).glob("v*.avsc"))
                },
            )
            for aggregate_type, entry in registry.items()
            if not aggregate_type.startswith("_")
        }

    @property
    def topics(self) -> list[str]:
        return [stream.topic for stream in self.streams.values()]

    def stream_for_topic(self, topic: str) -> Stream:
        return next(stream for stream in self.streams.values() if stream.topic == topic)

    def encode(self, row: OutboxRow) -> Message:
        """The Kafka message for one outbox row; raises PoisonEvent if the row cannot be encoded."""
        stream = self.streams.get(row.aggregate_type)
        if stream is None:
            raise PoisonEvent(f"no stream for aggregate type {row.aggregate_type!r} in avro_schemas/streams.json")
        schema = stream.versions.get(row.schema_version)
        if schema is None:
            raise PoisonEvent(f"no Avro schema {stream.topic} v{row.schema_version} in avro_schemas/")
        buffer = io.BytesIO()
        try:
            fastavro.schemaless_writer(buffer, schema.parsed, schema.record(row))
        except PoisonEvent:
            raise
        except (ValueError, TypeError, AttributeError) as exc:  # e.g. a timestamp that is not ISO 8601 text
            raise PoisonEvent(f"does not fit {schema.full_name} v{schema.version}: {exc}") from exc
        return Message(
            topic=stream.topic,
            key=row.aggregate_id.encode(),
            value=buffer.getvalue(),
            headers=[
                ("event_id", row.event_id.encode()),
                ("event_type", row.event_type.encode()),
                ("schema", schema.full_name.encode()),
                ("schema_version", str(schema.version).encode()),
                ("occurred_at", str((row.occurred_at - _EPOCH) // _MILLISECOND).encode()),
                ("source_txid", str(row.txid).encode()),
            ],
        )

    def decode(self, message_value: bytes, aggregate_type: str, version: int) -> dict[str, Any]:
        """Read a message back with the schema its headers name (for tests, tools and consumers)."""
        schema = self.streams[aggregate_type].versions[version].parsed
        return fastavro.schemaless_reader(io.BytesIO(message_value), schema, schema)
