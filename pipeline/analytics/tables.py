"""The checked-in Pinot schemas and tables, applied idempotently (`nibble pinot apply [--dry-run] | status`).

pinot/schemas/<table>.json and pinot/tables/<table>.json (the realtime part) are the desired state; a table
with a pinot/offline/<table>.json is hybrid: the minion moves each closed bucket of its realtime part there.
At apply time each table's stream config gets the Kafka address Pinot should use and its decoder, set here for
every table: the project's wire-format decoder (pinot/decoder), the schema registry as Pinot reaches it and,
as its reader schema, the newest Avro schema of its topic from avro_schemas/ (one source of truth for the
contract), and the
settings of `settings.pinot` fill in the window: the realtime retention, the minion's bucket, buffer and
schedule, the replicas (and server tenant) of every part, and the table-name prefix. Only what differs is
sent; a part whose replicas change is rebalanced.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pinotdb.exceptions

from connectors.pinot import Controller, broker_connection, count, time_boundary
from pipeline.config import Endpoints, PinotSettings, Settings, schedule_cron, span_seconds
from pipeline.contract.codec import Codec
from pipeline.contract.topics import ensure_stream_topics
from pipeline.errors import NibbleError
from pipeline.polling import poll
from pipeline.resources import PINOT

DECODER_CLASS = "com.nibble.pinot.WireFormatAvroDecoder"
TASK_TYPE = "RealtimeToOfflineSegmentsTask"
FLUSH_ROWS = "realtime.segment.flush.threshold.rows"
FLUSH_TIME = "realtime.segment.flush.threshold.time"
RETENTION_UNITS = (("DAYS", 86_400), ("HOURS", 3_600), ("MINUTES", 60), ("SECONDS", 1))
# Heap per key, measured on 0.11 (docs/faults.md): an MD5 dedup key, an upsert key with its record location.
DEDUP_KEY_BYTES = 96
UPSERT_KEY_BYTES = 190


class TableNotQueryable(NibbleError):
    """A table just created or changed did not answer queries in time."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: dict[str, Any]
    table: dict[str, Any]  # the realtime part: every table has one
    offline: dict[str, Any] | None = None  # a hybrid table's offline part, filled by the minion

    @property
    def time_column(self) -> str:
        return str(self.table["segmentsConfig"]["timeColumnName"])

    @property
    def topic(self) -> str:
        """The Kafka topic its realtime part reads (prefixed, as applied)."""
        return str(self.table["tableIndexConfig"]["streamConfigs"]["stream.kafka.topic.name"])

    @property
    def keys(self) -> str:
        """What the server keeps a key of on its heap for each row of the realtime part: dedup, upsert, none."""
        return "dedup" if "dedupConfig" in self.table else "upsert" if "upsertConfig" in self.table else "none"


def retention(span: str) -> tuple[str, int]:
    """A span as Pinot's retention: the largest time unit that divides it, and how many of them."""
    seconds = span_seconds(span)
    unit, size = next((unit, size) for unit, size in RETENTION_UNITS if seconds % size == 0)
    return unit, seconds // size


def windowed(table: dict[str, Any], offline: dict[str, Any] | None, pinot: PinotSettings) -> None:
    """Fill in what `settings.pinot` decides: the realtime retention (the window), the segment thresholds when
    set, for an upsert table a filter on events older than the window, and for a hybrid table the minion's
    task (bucket, buffer, schedule; the merge type is the file's)."""
    unit, value = retention(pinot.realtime_window)
    table["segmentsConfig"].update(retentionTimeUnit=unit, retentionTimeValue=str(value))
    if "upsertConfig" in table:
        # An event older than the window (a replay) could only replace a newer state the table no longer
        # holds: an upsert table ignores it. (True filters the row out.)
        window_ms = span_seconds(pinot.realtime_window) * 1000
        filtered = f"lessThan(plus(occurred_at, {window_ms}), now())"
        table.setdefault("ingestionConfig", {})["filterConfig"] = {"filterFunction": filtered}
    stream = table["tableIndexConfig"]["streamConfigs"]
    if pinot.segment_rows:
        stream[FLUSH_ROWS] = str(pinot.segment_rows)
    if pinot.segment_time:
        stream[FLUSH_TIME] = pinot.segment_time
    if offline is not None:
        tasks = table.setdefault("task", {}).setdefault("taskTypeConfigsMap", {})
        tasks.setdefault(TASK_TYPE, {}).update(
            bucketTimePeriod=pinot.history_bucket,
            bufferTimePeriod=pinot.history_buffer,
            schedule=schedule_cron(pinot.minion_schedule),
        )


def placed(table: dict[str, Any], offline: dict[str, Any] | None, pinot: PinotSettings) -> None:
    """Where each part's segments live: `replicas` copies of each (a realtime part's replicasPerPartition, an
    offline part's replication), on the servers tagged with `server_tenant` when one is set. Two replicas keep
    every segment answerable while one server is away: the dedup and upsert tables' strictReplicaGroup routing
    then sends each query to one whole replica (docs/operations.md)."""
    table["segmentsConfig"]["replicasPerPartition"] = str(pinot.replicas)
    if offline is not None:
        offline["segmentsConfig"]["replication"] = str(pinot.replicas)
    if pinot.server_tenant:
        for part in (table, offline):
            if part is not None:
                part.setdefault("tenants", {})["server"] = pinot.server_tenant


def placement(table: dict[str, Any]) -> str:
    """A part's replica count and server tenant ("2 on DefaultTenant"): a rebalance follows a change of either."""
    segments = table.get("segmentsConfig", {})
    count = segments.get("replicasPerPartition", segments.get("replication"))
    return f"{count} on {table.get('tenants', {}).get('server', 'DefaultTenant')}"


def decoder_config(reader: dict[str, Any], first: dict[str, Any], endpoints: Endpoints) -> dict[str, str]:
    """Every table's decoder: the project's (pinot/decoder) for Confluent's wire format, reading with the
    stream's newest schema; unframed messages, from before the switch, were written with its v1."""
    return {
        "stream.kafka.decoder.class.name": DECODER_CLASS,
        "stream.kafka.decoder.prop.schema": json.dumps(reader, separators=(",", ":")),
        "stream.kafka.decoder.prop.schema.registry.url": endpoints.pinot_schema_registry_url,
        "stream.kafka.decoder.prop.unframed.writer.schema": json.dumps(first, separators=(",", ":")),
    }


def desired_specs(settings: Settings, pinot_dir: Path = PINOT) -> list[TableSpec]:
    codec = Codec()  # unprefixed: the checked-in configs name the plain topics
    specs = []
    for table_file in sorted((pinot_dir / "tables").glob("*.json")):
        table = json.loads(table_file.read_text())
        schema = json.loads((pinot_dir / "schemas" / table_file.name).read_text())
        offline_file = pinot_dir / "offline" / table_file.name
        offline = json.loads(offline_file.read_text()) if offline_file.exists() else None
        stream = table["tableIndexConfig"]["streamConfigs"]
        topic = stream["stream.kafka.topic.name"]
        versions = codec.stream_for_topic(topic).versions
        stream.update(decoder_config(versions[max(versions)].raw, versions[1].raw, settings.endpoints))
        stream["stream.kafka.topic.name"] = settings.endpoints.topic_prefix + topic
        stream["stream.kafka.broker.list"] = settings.endpoints.pinot_kafka_broker_list
        windowed(table, offline, settings.pinot)
        placed(table, offline, settings.pinot)
        name = settings.pinot.table_prefix + table_file.stem
        schema["schemaName"] = name
        for part in (table, offline):
            if part is not None:
                part["tableName"] = part["segmentsConfig"]["schemaName"] = name
        specs.append(TableSpec(name, schema, table, offline))
    return specs


def differences(desired: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` does not hold what `desired` says; keys Pinot adds on its own are not differences."""
    if isinstance(desired, dict) and isinstance(actual, dict):
        return [d for key, value in desired.items() for d in differences(value, actual.get(key), f"{path}.{key}")]
    if isinstance(desired, list) and isinstance(actual, list) and len(desired) == len(actual):
        if all(isinstance(item, dict) for item in desired):
            return [
                d
                for i, (a, b) in enumerate(zip(desired, actual, strict=True))
                for d in differences(a, b, f"{path}[{i}]")
            ]
        if sorted(map(str, desired)) == sorted(map(str, actual)):
            return []
    if desired != actual and str(desired) != str(actual):
        return [path.lstrip(".")]
    return []


def _new_columns(desired: dict[str, Any], existing: dict[str, Any] | None) -> list[str]:
    """Columns of the desired schema that the existing one lacks (none when there is no schema yet)."""
    if existing is None:
        return []
    return sorted(_column_names(desired) - _column_names(existing))


def _column_names(schema: dict[str, Any]) -> set[str]:
    specs = ("dimensionFieldSpecs", "metricFieldSpecs", "dateTimeFieldSpecs")
    return {field["name"] for key in specs for field in schema.get(key, [])}


def _decoding(table: dict[str, Any]) -> dict[str, str]:
    stream = table["tableIndexConfig"]["streamConfigs"]
    return {key: value for key, value in stream.items() if key.startswith("stream.kafka.decoder.")}


def _change(kind: str, name: str, existing: object, diff: list[str]) -> str:
    return f"{kind} {name}: " + ("create" if existing is None else "update " + ", ".join(diff))


def _put_part(
    controller: Controller,
    changes: list[str],
    kind: str,
    name: str,
    desired: dict[str, Any],
    existing: dict[str, Any] | None,
    dry_run: bool,
) -> bool:
    """Send one part (REALTIME or OFFLINE) of a table when it differs from the stored config, which Pinot names
    with its part (e.g. orders_REALTIME); True when the part was created."""
    diff = differences({**desired, "tableName": f"{name}_{kind}"}, existing) if existing else ["(new)"]
    if not diff:
        return False
    changes.append(_change("table" if kind == "REALTIME" else "offline table", name, existing, diff))
    if not dry_run:
        controller.put_table(copy.deepcopy(desired), exists=existing is not None)
    if existing is not None and placement(existing) != placement(desired):
        # Pinot places only new segments by the new config: a rebalance copies (or drops) the others, the
        # consuming ones included, keeping one replica of each answering meanwhile.
        changes.append(f"table {name}: rebalance {kind} from {placement(existing)} to {placement(desired)}")
        if not dry_run:
            controller.rebalance(f"{name}_{kind}")
    return not dry_run and existing is None


def apply(settings: Settings, dry_run: bool = False, pinot_dir: Path = PINOT) -> list[str]:
    """Create or update every schema and table; returns one line per change (empty: nothing to do)."""
    endpoints = settings.endpoints
    controller = Controller(endpoints.pinot_controller_url)
    if not dry_run:  # a realtime table can only be created on a topic that exists
        ensure_stream_topics(endpoints, Codec(endpoints.topic_prefix))
    changes = []
    for spec in desired_specs(settings, pinot_dir):
        existing_schema = controller.schema(spec.name)
        existing_table = controller.realtime_table(spec.name)
        if existing_table is not None and (added := _new_columns(spec.schema, existing_schema)):
            # Pinot 0.11 does not add a column to its consuming segments: queries on it fail until they roll
            # over. Recreating the table would re-ingest the topic; that is the operator's call, not apply's.
            changes.append(f"table {spec.name}: new columns {', '.join(added)} answer only after segments roll")
        schema_diff = differences(spec.schema, existing_schema) if existing_schema else ["(new)"]
        if schema_diff:
            changes.append(_change("schema", spec.name, existing_schema, schema_diff))
            if not dry_run:
                controller.put_schema(copy.deepcopy(spec.schema), exists=existing_schema is not None)
        stored_time = (existing_table or {}).get("segmentsConfig", {}).get("timeColumnName", spec.time_column)
        if stored_time != spec.time_column:
            # The time column decides each segment's time range (retention, the minion's buckets, the broker's
            # boundary): the segments already built keep the old one, so the table must be built again. Its
            # offline part too waits for the rebuild: Pinot refuses two parts split on different columns.
            changes.append(
                f"table {spec.name}: time column {stored_time} -> {spec.time_column} needs "
                f"`nibble pinot rebuild {spec.name}`"
            )
            continue
        if spec.offline is not None:  # first: the realtime part's task writes into it
            existing_offline = controller.offline_table(spec.name)
            _put_part(controller, changes, "OFFLINE", spec.name, spec.offline, existing_offline, dry_run)
        redecode = existing_table is not None and _decoding(spec.table) != _decoding(existing_table)
        if _put_part(controller, changes, "REALTIME", spec.name, spec.table, existing_table, dry_run):
            controller.wait_online(spec.name)  # queryable when apply returns
            _wait_queryable(settings, spec.name)
        elif redecode:
            # A consuming segment keeps the decoder it started with (0.11), and 0.11's forceCommit breaks an
            # empty consuming segment of a dedup or upsert table: a server restart starts them again instead.
            changes.append(
                f"table {spec.name}: its consuming segments decode with the old decoder settings until they roll: "
                "restart the Pinot servers before publishing what only the new settings read (docs/operations.md)"
            )
    return changes


def _wait_queryable(settings: Settings, name: str, timeout_s: float = 60) -> None:
    """Wait until the broker answers a query on the new table without an error (its routing catches up
    with the servers a moment after they host the segments)."""
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()

    def answers() -> bool:
        try:
            cursor.execute(f"SELECT COUNT(*) FROM {name}")
        except pinotdb.exceptions.Error:
            return False
        return True

    if not poll(answers, timeout_s, longest=1.0):
        raise TableNotQueryable(f"Pinot table {name} still answers no query after {timeout_s:.0f} s")


# --- status: what each table holds, where the window and the minion stand ---------------------------------


@dataclass(frozen=True)
class TableStatus:
    name: str
    keys: str  # dedup, upsert or none (TableSpec.keys)
    hybrid: bool
    realtime_rows: int  # an upsert table counts each key's newest row only: its live keys
    offline_rows: int | None  # None: not hybrid
    boundary_ms: int | None  # the broker's time boundary; None: no offline segment yet
    oldest_segment_end_ms: int | None  # the oldest realtime segment's newest event (retention deletes by it)
    realtime_segments: int

    @property
    def heap_keys(self) -> int:
        """Keys the server keeps on its heap for this table: one per realtime row of a dedup table, one per
        live key of an upsert table."""
        return 0 if self.keys == "none" else self.realtime_rows

    @property
    def heap_bytes(self) -> int:
        return self.heap_keys * (DEDUP_KEY_BYTES if self.keys == "dedup" else UPSERT_KEY_BYTES)


def moment(millis: int | None) -> str:
    """An event time (epoch milliseconds) as a status line shows it, to the minute in UTC; "-" for none."""
    return "-" if millis is None else datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def segment_end_ms(metadata: dict[str, Any]) -> int | None:
    """A segment's newest event time from its ZooKeeper metadata (None while it is still consuming)."""
    end = int(metadata.get("segment.end.time", -1))
    if end < 0:
        return None
    unit = metadata.get("segment.time.unit", "MILLISECONDS")
    return end * {"DAYS": 86_400_000, "HOURS": 3_600_000, "MINUTES": 60_000, "SECONDS": 1_000}.get(unit, 1)


def table_status(settings: Settings) -> list[TableStatus]:
    controller = Controller(settings.endpoints.pinot_controller_url)
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()

    def rows(name: str) -> int:
        return count(cursor, f"SELECT COUNT(*) FROM {name}")  # a name from the checked-in configs, never user text

    statuses = []
    for spec in desired_specs(settings):
        segments = controller.segments(f"{spec.name}_REALTIME")
        ends = [end for end in map(segment_end_ms, segments) if end is not None]
        hybrid = spec.offline is not None
        statuses.append(
            TableStatus(
                name=spec.name,
                keys=spec.keys,
                hybrid=hybrid,
                realtime_rows=rows(f"{spec.name}_REALTIME"),
                offline_rows=rows(f"{spec.name}_OFFLINE") if hybrid else None,
                boundary_ms=time_boundary(settings.endpoints.pinot_broker_url, spec.name) if hybrid else None,
                oldest_segment_end_ms=min(ends, default=None),
                realtime_segments=len(segments),
            )
        )
    return statuses
