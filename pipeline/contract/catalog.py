"""The stream catalog: every stream declared once, in avro_schemas/streams.json (its `_doc` says what each
field means). The codec, the relay's default outboxes, backfill, rebuild and the status commands read it;
tests/unit/test_stream_catalog.py checks the Avro schemas, Pinot configs and migrations against it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.resources import AVRO_SCHEMAS


@dataclass(frozen=True)
class Snapshot:
    """What `nibble backfill` runs for a stream: <outbox>.<function>(ids uuid[]) over its source table."""

    function: str  # migration 0014's emit_<aggregate>_snapshots, returning the events written
    event_type: str
    backfill_order: int  # tables are backfilled in this order (dimensions before the facts that name them)
    visible: str | None  # a SQL function of a source row: whether analytics holds it; None: every row


@dataclass(frozen=True)
class StreamEntry:
    aggregate_type: str
    outbox: str  # the service schema of the outbox its triggers write
    source_table: str  # schema.table
    event_types: tuple[str, ...]
    topic: str  # unprefixed
    schema_dir: str
    compacted: bool
    pinot_tables: tuple[str, ...]
    snapshot: Snapshot | None

    @property
    def table_name(self) -> str:
        """The source table without its schema: how the backfill CLI and backfill_progress name it."""
        return self.source_table.split(".")[1]

    @property
    def history_tables(self) -> tuple[str, ...]:
        """The Pinot tables holding every event: all of an uncompacted stream's; those after a compacted
        stream's first, its upsert table of the newest state per aggregate."""
        return self.pinot_tables[1:] if self.compacted else self.pinot_tables


def load(schemas_dir: Path = AVRO_SCHEMAS) -> dict[str, StreamEntry]:
    """The catalog, by aggregate type, in file order."""
    raw = json.loads((schemas_dir / "streams.json").read_text())
    return {
        aggregate_type: StreamEntry(
            aggregate_type=aggregate_type,
            outbox=entry["outbox"],
            source_table=entry["source_table"],
            event_types=tuple(entry["event_types"]),
            topic=entry["topic"],
            schema_dir=entry["schema_dir"],
            compacted=entry["compacted"],
            pinot_tables=tuple(entry["pinot_tables"]),
            snapshot=Snapshot(**entry["snapshot"]) if entry["snapshot"] else None,
        )
        for aggregate_type, entry in raw.items()
        if not aggregate_type.startswith("_")
    }


def outboxes(streams: dict[str, StreamEntry]) -> list[str]:
    """The outbox schemas, each once, in catalog order."""
    return list(dict.fromkeys(stream.outbox for stream in streams.values()))


def snapshot_streams(streams: dict[str, StreamEntry]) -> list[StreamEntry]:
    """The streams a backfill snapshots, in backfill order."""
    with_snapshot = [stream for stream in streams.values() if stream.snapshot is not None]
    return sorted(with_snapshot, key=lambda stream: stream.snapshot.backfill_order)  # type: ignore[union-attr]
