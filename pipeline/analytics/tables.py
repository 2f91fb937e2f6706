"""The checked-in Pinot schemas and tables, applied idempotently (`nibble pinot apply [--dry-run] | status`).

pinot/schemas/<table>.json and pinot/tables/<table>.json are the desired state. At apply time each table's
stream config gets the Kafka address Pinot should use and, as its decoder schema, the newest Avro schema
of its topic from avro_schemas/ (one source of truth for the contract). Only what differs is sent.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pinotdb.exceptions

from connectors.pinot import Controller, broker_connection
from pipeline.config import Settings
from pipeline.contract.codec import Codec
from pipeline.contract.topics import ensure_stream_topics
from pipeline.resources import PINOT


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: dict[str, Any]
    table: dict[str, Any]


def desired_specs(settings: Settings, pinot_dir: Path = PINOT) -> list[TableSpec]:
    codec = Codec()  # unprefixed: the checked-in configs name the plain topics
    specs = []
    for table_file in sorted((pinot_dir / "tables").glob("*.json")):
        table = json.loads(table_file.read_text())
        schema = json.loads((pinot_dir / "schemas" / table_file.name).read_text())
        stream = table["tableIndexConfig"]["streamConfigs"]
        topic = stream["stream.kafka.topic.name"]
        avro = codec.stream_for_topic(topic).latest.raw
        stream["stream.kafka.decoder.prop.schema"] = json.dumps(avro, separators=(",", ":"))
        stream["stream.kafka.topic.name"] = settings.endpoints.topic_prefix + topic
        stream["stream.kafka.broker.list"] = settings.endpoints.pinot_kafka_broker_list
        specs.append(TableSpec(table_file.stem, schema, table))
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


def _change(kind: str, name: str, existing: object, diff: list[str]) -> str:
    return f"{kind} {name}: " + ("create" if existing is None else "update " + ", ".join(diff))


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
        # Pinot answers with the physical table name, e.g. orders_REALTIME.
        stored_as = {**spec.table, "tableName": f"{spec.name}_REALTIME"}
        table_diff = differences(stored_as, existing_table) if existing_table else ["(new)"]
        if table_diff:
            changes.append(_change("table", spec.name, existing_table, table_diff))
            if not dry_run:
                controller.put_table(copy.deepcopy(spec.table), exists=existing_table is not None)
                if existing_table is None:  # queryable when apply returns
                    controller.wait_online(spec.name)
                    _wait_queryable(settings, spec.name)
    return changes


def _wait_queryable(settings: Settings, name: str, timeout_s: float = 60) -> None:
    """Wait until the broker answers a query on the new table without an error (its routing catches up
    with the servers a moment after they host the segments)."""
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute(f"SELECT COUNT(*) FROM {name}")
            return
        except pinotdb.exceptions.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def table_counts(settings: Settings) -> list[tuple[str, int, int | None]]:
    """Each table's row count and its newest event time (epoch ms, None when empty)."""
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    counts = []
    for spec in desired_specs(settings):
        cursor.execute(f"SELECT COUNT(*), MAX(occurred_at) FROM {spec.name}")
        count, newest = cursor.fetchone()
        counts.append((spec.name, int(count), int(newest) if count else None))
    return counts
