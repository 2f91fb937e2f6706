"""The stream catalog (avro_schemas/streams.json) against what it declares: the Avro schemas, the Pinot
configs, the migrations' outboxes, source tables and snapshot functions, and the relay's default outboxes
(pure file checks: no service needed)."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.config import RelaySettings
from pipeline.contract import catalog
from pipeline.contract.codec import ENVELOPE_FIELDS
from pipeline.resources import AVRO_SCHEMAS, MIGRATIONS, PINOT

STREAMS = catalog.load()
MIGRATION_SQL = "\n".join(path.read_text() for path in sorted(MIGRATIONS.glob("*.sql")))
FIELD_SPECS = ("dimensionFieldSpecs", "metricFieldSpecs", "dateTimeFieldSpecs")


def newest_avro(stream: catalog.StreamEntry) -> dict:
    paths = sorted((AVRO_SCHEMAS / stream.schema_dir).glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
    return json.loads(paths[-1].read_text())


def test_every_avro_folder_is_one_streams() -> None:
    folders = sorted(p.name for p in AVRO_SCHEMAS.iterdir() if p.is_dir())
    assert folders == sorted(stream.schema_dir for stream in STREAMS.values())
    assert len({stream.topic for stream in STREAMS.values()}) == len(STREAMS)


@pytest.mark.parametrize("stream", STREAMS.values(), ids=lambda s: s.aggregate_type)
def test_every_avro_version_starts_with_the_envelope(stream: catalog.StreamEntry) -> None:
    for path in sorted((AVRO_SCHEMAS / stream.schema_dir).glob("v*.avsc")):
        names = [field["name"] for field in json.loads(path.read_text())["fields"]]
        assert tuple(names[: len(ENVELOPE_FIELDS)]) == ENVELOPE_FIELDS, path


def test_every_pinot_table_reads_the_topic_of_the_stream_listing_it() -> None:
    listed = {table: stream for stream in STREAMS.values() for table in stream.pinot_tables}
    files = sorted(path.stem for path in (PINOT / "tables").glob("*.json"))
    assert files == sorted(listed)
    for table, stream in listed.items():
        config = json.loads((PINOT / "tables" / f"{table}.json").read_text())
        assert config["tableIndexConfig"]["streamConfigs"]["stream.kafka.topic.name"] == stream.topic, table
        offline = PINOT / "offline" / f"{table}.json"
        assert not offline.exists() or json.loads(offline.read_text())["tableType"] == "OFFLINE", table


@pytest.mark.parametrize("stream", STREAMS.values(), ids=lambda s: s.aggregate_type)
def test_only_the_state_table_of_a_stream_upserts(stream: catalog.StreamEntry) -> None:
    for table in stream.pinot_tables:
        config = json.loads((PINOT / "tables" / f"{table}.json").read_text())
        assert ("upsertConfig" in config) == (table not in stream.history_tables), table


@pytest.mark.parametrize("stream", STREAMS.values(), ids=lambda s: s.aggregate_type)
def test_every_pinot_column_comes_from_the_avro_schema_or_a_transform(stream: catalog.StreamEntry) -> None:
    fields = {field["name"] for field in newest_avro(stream)["fields"]}
    for table in stream.pinot_tables:
        schema = json.loads((PINOT / "schemas" / f"{table}.json").read_text())
        config = json.loads((PINOT / "tables" / f"{table}.json").read_text())
        derived = {t["columnName"] for t in config.get("ingestionConfig", {}).get("transformConfigs", [])}
        columns = {spec["name"] for key in FIELD_SPECS for spec in schema.get(key, [])}
        assert columns - fields - derived == set(), table
        assert set(schema.get("primaryKeyColumns", [])) <= fields, table


def test_the_migrations_create_exactly_the_catalogs_outboxes() -> None:
    created = set(re.findall(r"CREATE TABLE (\w+)\.outbox \(", MIGRATION_SQL))
    assert created == set(catalog.outboxes(STREAMS))
    assert RelaySettings().outbox_schemas == catalog.outboxes(STREAMS)


@pytest.mark.parametrize("stream", STREAMS.values(), ids=lambda s: s.aggregate_type)
def test_the_migrations_write_what_the_catalog_declares(stream: catalog.StreamEntry) -> None:
    assert re.search(rf"CREATE TABLE (IF NOT EXISTS )?{re.escape(stream.source_table)} \(", MIGRATION_SQL)
    # every event of the stream goes into its own outbox, under its aggregate type
    assert f"INSERT INTO {stream.outbox}.outbox" in MIGRATION_SQL
    assert f"'{stream.aggregate_type}'" in MIGRATION_SQL
    for event_type in stream.event_types:
        assert f"'{event_type}'" in MIGRATION_SQL, event_type
    if stream.snapshot is not None:
        function = f"{stream.outbox}.{stream.snapshot.function}"
        assert re.search(rf"CREATE (OR REPLACE )?FUNCTION {re.escape(function)}\(ids uuid\[\]\)", MIGRATION_SQL)
        assert f"'{stream.snapshot.event_type}'" in MIGRATION_SQL
        if stream.snapshot.visible:
            assert f"CREATE FUNCTION {stream.snapshot.visible}(" in MIGRATION_SQL


def test_the_backfill_order_is_a_sequence() -> None:
    orders = [stream.snapshot.backfill_order for stream in catalog.snapshot_streams(STREAMS) if stream.snapshot]
    assert orders == list(range(1, len(orders) + 1))
