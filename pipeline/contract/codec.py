"""The Avro contracts of avro_schemas/ and the outbox row -> Kafka message conversion (docs/events.md).

Values are in Confluent's wire format: the magic byte 0, the registry's 4-byte big-endian id of the schema
version the outbox row names, then that version's schemaless Avro binary; the `schema` and `schema_version`
headers name the version too. Messages published before the switch to the wire format (and by a codec
without a registry) are the Avro binary alone: every schema starts with the string `event_id`, whose first
byte (its length) is never 0, so a reader tells the two apart by the first byte.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import fastavro
import orjson

from pipeline.contract import catalog
from pipeline.contract.rows import OutboxRow
from pipeline.contract.writers import Misfit, UnsupportedSchema, Writer, epoch_millis, field_writer
from pipeline.errors import NibbleError
from pipeline.resources import AVRO_SCHEMAS

ENVELOPE_FIELDS = ("event_id", "event_type", "occurred_at", "source_txid", "outbox_position")
WIRE_MAGIC = 0
WIRE_HEADER_BYTES = 5


def wire_header(schema_id: int) -> bytes:
    """Confluent's 5-byte header: magic byte 0 and the schema id, 4 bytes big-endian."""
    return bytes([WIRE_MAGIC]) + schema_id.to_bytes(4, "big")


def unframed(value: bytes) -> bytes:
    """The Avro binary of a message value, with or without the wire-format header."""
    return value[WIRE_HEADER_BYTES:] if value[:1] == bytes([WIRE_MAGIC]) else value


class ContractError(NibbleError):
    """A checked-in schema the codec cannot write (a type it does not cover)."""


class PoisonEvent(Exception):
    """This one event can never be published as it is; the message says why."""


class Message(NamedTuple):
    """A tuple, not a frozen dataclass: built once per event, and a frozen dataclass's __init__ costs ~1 us."""

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


@dataclass(frozen=True)
class SchemaVersion:
    full_name: str
    version: int
    raw: dict[str, Any]
    parsed: Any  # fastavro's form, for reading messages back
    payload_fields: frozenset[str]
    required_fields: frozenset[str]
    envelope: tuple[Writer, ...]  # the ENVELOPE_FIELDS' writers; they come first, in that order
    payload: tuple[tuple[str, Any, Writer], ...]  # the other fields in schema order: name, default, writer
    headers: tuple[tuple[str, bytes], ...]  # the headers naming this version, encoded once

    @classmethod
    def load(cls, path: Path) -> SchemaVersion:
        raw = json.loads(path.read_text())
        if not _starts_with_event_id(raw):
            # Readers tell unframed messages from framed ones by the first byte (see the module's doc).
            raise ContractError(f"{path}: the first field must be the string event_id (a uuid)")
        if tuple(f["name"] for f in raw["fields"][: len(ENVELOPE_FIELDS)]) != ENVELOPE_FIELDS:
            # The codec writes the envelope from the row's columns, ahead of the payload's fields.
            raise ContractError(f"{path}: the first fields must be {', '.join(ENVELOPE_FIELDS)}, in that order")
        envelope, payload = raw["fields"][: len(ENVELOPE_FIELDS)], raw["fields"][len(ENVELOPE_FIELDS) :]
        full_name = f"{raw['namespace']}.{raw['name']}"
        version = int(path.stem.removeprefix("v"))
        try:
            envelope_writers = tuple(field_writer(f["name"], f["type"], millis_given=True) for f in envelope)
            payload_writers = tuple((f["name"], f.get("default"), field_writer(f["name"], f["type"])) for f in payload)
        except UnsupportedSchema as exc:
            raise ContractError(f"{path}: {exc}") from None
        return cls(
            full_name=full_name,
            version=version,
            raw=raw,
            parsed=fastavro.parse_schema(raw),
            payload_fields=frozenset(f["name"] for f in payload),
            required_fields=frozenset(f["name"] for f in payload if "default" not in f),
            envelope=envelope_writers,
            payload=payload_writers,
            headers=(("schema", full_name.encode()), ("schema_version", str(version).encode())),
        )

    def write(self, row: OutboxRow, occurred_at_ms: int, header: bytes = b"") -> bytes:
        """`header` and the Avro binary of one event; raises PoisonEvent when its payload does not fit this
        version."""
        payload = parse_payload(row.payload)
        keys = payload.keys()
        if not keys <= self.payload_fields:
            raise PoisonEvent(
                f"payload keys not in {self.full_name} v{self.version}: {sorted(keys - self.payload_fields)}"
            )
        # Keys all within the schema and as many as its fields: then every required one is there too.
        if len(keys) < len(self.payload_fields) and not self.required_fields <= keys:
            missing = sorted(self.required_fields - keys)
            raise PoisonEvent(f"payload lacks required fields of {self.full_name} v{self.version}: {missing}")
        event_id, event_type, occurred_at, source_txid, outbox_position = self.envelope
        get = payload.get
        out = bytearray(header)
        try:
            event_id(out, row.event_id)
            event_type(out, row.event_type)
            occurred_at(out, occurred_at_ms)
            source_txid(out, row.txid)
            outbox_position(out, row.position)
            for name, default, write in self.payload:
                write(out, get(name, default))
        except Misfit as exc:
            raise PoisonEvent(f"does not fit {self.full_name} v{self.version}: {exc}") from None
        return bytes(out)


@dataclass(frozen=True)
class Stream:
    aggregate_type: str
    topic: str
    versions: dict[int, SchemaVersion]
    # A state stream's topic is compacted to the newest event per aggregate; the ledger's keeps every entry.
    compacted: bool

    @property
    def latest(self) -> SchemaVersion:
        return self.versions[max(self.versions)]


def _starts_with_event_id(raw: dict[str, Any]) -> bool:
    first = raw["fields"][0]
    kind = first["type"]
    return first["name"] == "event_id" and isinstance(kind, dict) and kind == {"type": "string", "logicalType": "uuid"}


SchemaIdLookup = Callable[["Stream", SchemaVersion], int]


class Route(NamedTuple):
    """Where the events of one (aggregate type, schema version) go and how they are written."""

    topic: str
    schema: SchemaVersion
    header: bytes  # the wire-format header, or b"" without a registry


class Codec:
    """Turns outbox rows into Kafka messages; one instance per relay, schemas parsed once.

    With `schema_id` (the registry's id of a stream's version; pipeline/contract/subjects.py), values are in
    the wire format and each version's id is asked once, when the version is first met; whatever the lookup
    raises reaches the caller with nothing cached. Without it, values are the Avro binary alone."""

    def __init__(
        self, topic_prefix: str = "", schemas_dir: Path = AVRO_SCHEMAS, schema_id: SchemaIdLookup | None = None
    ) -> None:
        self.schema_id = schema_id
        self.routes: dict[tuple[str, int], Route] = {}  # (aggregate type, version), filled as they are met
        self.streams = {
            aggregate_type: Stream(
                aggregate_type=aggregate_type,
                topic=topic_prefix + entry.topic,
                versions={
                    (version := SchemaVersion.load(path)).version: version
                    for path in sorted((schemas_dir / entry.schema_dir).glob("v*.avsc"))
                },
                compacted=entry.compacted,
            )
            for aggregate_type, entry in catalog.load(schemas_dir).items()
        }

    @property
    def topics(self) -> list[str]:
        return [stream.topic for stream in self.streams.values()]

    def stream_for_topic(self, topic: str) -> Stream:
        return next(stream for stream in self.streams.values() if stream.topic == topic)

    def encode(self, row: OutboxRow) -> Message:
        """The Kafka message for one outbox row; raises PoisonEvent if the row cannot be encoded."""
        route = self.routes.get((row.aggregate_type, row.schema_version)) or self._route(row)
        occurred_at_ms = epoch_millis(row.occurred_at)
        schema = route.schema
        return Message(
            route.topic,
            row.aggregate_id.encode(),
            schema.write(row, occurred_at_ms, route.header),
            [
                ("event_id", row.event_id.encode()),
                ("event_type", row.event_type.encode()),
                *schema.headers,
                ("occurred_at", str(occurred_at_ms).encode()),
                ("source_txid", str(row.txid).encode()),
            ],
        )

    def _route(self, row: OutboxRow) -> Route:
        """The route of a version met for the first time; its registry id is asked here, once."""
        stream = self.streams.get(row.aggregate_type)
        if stream is None:
            raise PoisonEvent(f"no stream for aggregate type {row.aggregate_type!r} in avro_schemas/streams.json")
        schema = stream.versions.get(row.schema_version)
        if schema is None:
            raise PoisonEvent(f"no Avro schema {stream.topic} v{row.schema_version} in avro_schemas/")
        header = b"" if self.schema_id is None else wire_header(self.schema_id(stream, schema))
        route = self.routes[(row.aggregate_type, row.schema_version)] = Route(stream.topic, schema, header)
        return route

    def decode(self, message_value: bytes, aggregate_type: str, version: int) -> dict[str, Any]:
        """Read a message back (framed or not) with the schema its headers name (for tests and tools)."""
        schema = self.streams[aggregate_type].versions[version].parsed
        return fastavro.schemaless_reader(io.BytesIO(unframed(message_value)), schema, schema)
