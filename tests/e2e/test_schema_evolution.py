"""Schema evolution end to end, the worked example of docs/events.md ("Evolving a schema"): the restaurants
stream gains `prep_time_minutes` (avro_schemas/restaurants/v2.avsc, migration 0024, the Pinot column) while
events of v1 are still in the outbox and in Kafka. Nothing is lost, Pinot ingests both versions (the column
is null in the rows whose newest event is v1, filled from the first v2 event on) and equals PostgreSQL, and a
stock confluent-kafka `AvroDeserializer` reads both versions.

The world before v2 is the repository without v2: a database migrated without 0024, the registry holding v1,
a restaurants table with no column and v1 as its reader, and a relay deployed before v2 (its avro_schemas/
had no v2.avsc) that published part of the outbox. Then the steps of the docs, in their order. Everything is
this module's own: a scratch database, topics and registry subjects under a prefix, and one Pinot table
(NIBBLE_PINOT_TABLE_PREFIX), all dropped afterwards.
"""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import requests
from confluent_kafka import DeserializingConsumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from connectors.pinot import Controller, broker_connection, count
from connectors.registry import Registry
from pipeline.analytics.rebuild import rebuild
from pipeline.analytics.tables import apply, decoder_config, desired_specs
from pipeline.config import Settings
from pipeline.contract.codec import Codec
from pipeline.contract.rows import OutboxRow
from pipeline.contract.subjects import apply_subjects, registered_ids
from pipeline.contract.topics import ensure_stream_topics
from pipeline.migrate import migrate
from pipeline.polling import poll
from pipeline.resources import AVRO_SCHEMAS, MIGRATIONS, PINOT
from tests.support.database import scratch_database
from tests.support.exactness import STATE_TABLES, Ingested, compare_state, record_committed_events
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess, delete_subjects
from tests.support.services import Services

pytestmark = pytest.mark.slow

MIGRATION = "0024_restaurant_prep_time.sql"
COLUMN = "prep_time_minutes"
RESTAURANTS = next(spec for spec in STATE_TABLES if spec.table == "restaurants")
PINOT_NULL_INT = -(2**31)  # what Pinot 0.11 stores for a null INT
OUTBOX_ROWS = (
    "SELECT position, event_id::text, aggregate_type, aggregate_id::text, event_type, payload::text, "
    "schema_version, txid::text::bigint, occurred_at FROM restaurant_service.outbox ORDER BY position LIMIT %s"
)


@dataclass(frozen=True)
class Before:
    """The repository as it was before v2, as folders: migrations, avro_schemas/, pinot/ (restaurants only)."""

    migrations: Path
    schemas: Path
    pinot: Path


def repository_before_v2(root: Path) -> Before:
    migrations = root / "migrations"
    migrations.mkdir()
    for path in MIGRATIONS.glob("*.sql"):
        if path.name != MIGRATION:
            shutil.copy(path, migrations / path.name)
    schemas = root / "avro_schemas"
    shutil.copytree(AVRO_SCHEMAS, schemas)
    for path in (schemas / "restaurants").glob("v*.avsc"):
        if path.name != "v1.avsc":
            path.unlink()
    pinot = restaurants_only(root / "pinot")
    schema_file = pinot / "schemas" / "restaurants.json"
    schema = json.loads(schema_file.read_text())
    schema["dimensionFieldSpecs"] = [spec for spec in schema["dimensionFieldSpecs"] if spec["name"] != COLUMN]
    schema_file.write_text(json.dumps(schema))
    return Before(migrations, schemas, pinot)


def restaurants_only(folder: Path) -> Path:
    """pinot/ with the restaurants table alone: `nibble pinot apply` on this module's prefix makes no other."""
    for kind in ("tables", "schemas"):
        (folder / kind).mkdir(parents=True)
        shutil.copy(PINOT / kind / "restaurants.json", folder / kind / "restaurants.json")
    return folder


@dataclass(frozen=True)
class Evolution:
    services: Services
    settings: Settings  # this module's topics, table and database
    db: str
    table: str
    before: Before

    @property
    def registry(self) -> Registry:
        return Registry(self.settings.endpoints.schema_registry_url)


@pytest.fixture
def evolution(services: Services, prefix: str, tmp_path: Path) -> Iterator[Evolution]:
    """The world before v2: the database, the registry's subjects and the restaurants table as they were."""
    before = repository_before_v2(tmp_path)
    table_prefix = f"evo{uuid.uuid4().hex[:8]}_"
    settings = services.settings(prefix)
    pinot = settings.pinot.model_copy(update={"table_prefix": table_prefix})
    with scratch_database(services.database_url, "evolution") as db:
        endpoints = settings.endpoints.model_copy(update={"database_url": db})
        settings = settings.model_copy(update={"endpoints": endpoints, "pinot": pinot})
        migrate(db, before.migrations)
        record_committed_events(db)
        old = Codec(prefix, before.schemas)
        apply_subjects(Registry(endpoints.schema_registry_url), old)
        ensure_stream_topics(endpoints, old)
        [spec] = desired_specs(settings, before.pinot)
        v1 = old.streams["restaurant"].versions[1].raw
        spec.table["tableIndexConfig"]["streamConfigs"].update(decoder_config(v1, v1, endpoints))
        controller = Controller(endpoints.pinot_controller_url)
        controller.put_schema(copy.deepcopy(spec.schema), exists=False)
        controller.put_table(copy.deepcopy(spec.table), exists=False)
        try:
            controller.wait_online(spec.name)
            yield Evolution(services, settings, db, spec.name, before)
        finally:
            controller.delete_table(spec.name)
            wait_until(lambda: not controller.hosted(spec.name), 120, what=f"{spec.name} to be dropped")
            requests.delete(f"{endpoints.pinot_controller_url}/schemas/{spec.name}", timeout=60)
            delete_subjects(prefix)


def publish_as_a_v1_relay(evolution: Evolution, count: int) -> None:
    """The first `count` restaurant events published as the relay deployed before v2 did (wire format, v1's
    registry id) and deleted from the outbox, as after Kafka's acknowledgement."""
    codec = Codec(
        evolution.settings.endpoints.topic_prefix, evolution.before.schemas, registered_ids(evolution.registry)
    )
    producer = Producer({"bootstrap.servers": evolution.services.kafka_bootstrap, "enable.idempotence": True})
    with psycopg.connect(evolution.db) as conn:
        rows = [OutboxRow(*row) for row in conn.execute(OUTBOX_ROWS, (count,))]
        for message in map(codec.encode, rows):
            producer.produce(message.topic, message.value, message.key, headers=message.headers)
        assert producer.flush(30) == 0
        conn.execute("DELETE FROM restaurant_service.outbox WHERE position = ANY(%s)", ([r.position for r in rows],))


def sql(db: str, statement: str, *params: object) -> list[tuple]:
    with psycopg.connect(db) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def read_with_stock_deserializer(evolution: Evolution, topic: str, expect: int, reader: str | None) -> list[dict]:
    """Every message of `topic` from the start, read by confluent-kafka's own AvroDeserializer (with
    `reader` as its reader schema, else each message as its writer's version wrote it)."""
    registry = SchemaRegistryClient({"url": evolution.settings.endpoints.schema_registry_url, "timeout": 10})
    deserializer = AvroDeserializer(registry, reader, conf={"subject.name.strategy.type": "TOPIC"})
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": evolution.services.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "value.deserializer": deserializer,
        }
    )
    consumer.subscribe([topic])
    events: list[dict] = []

    def read_one() -> bool:
        message = consumer.poll(1.0)
        if message is not None:
            assert message.error() is None, message.error()
            events.append(message.value())
        return len(events) >= expect

    try:
        wait_until(read_one, 60, what=f"{expect} events on {topic}")
    finally:
        consumer.close()
    return events


def test_a_field_added_while_v1_events_are_in_the_outbox_and_in_kafka(evolution: Evolution) -> None:
    db, settings = evolution.db, evolution.settings
    city = f"Evolution-{uuid.uuid4().hex[:6]}"
    # Before v2: 24 restaurants, 6 re-rated (30 v1 events); the old relay publishes 18 and is replaced.
    sql(
        db,
        "INSERT INTO restaurant_service.restaurants (name, cuisine_types, line1, city, location, rating) "
        "SELECT 'Restaurant ' || n, ARRAY['thai'], 'Main street 1', %s, "
        "ST_SetSRID(ST_MakePoint(13.4 + n / 1000.0, 52.5), 4326)::geography, 4.0 FROM generate_series(1, 24) n",
        city,
    )
    ids = [str(rid) for (rid,) in sql(db, "SELECT id FROM restaurant_service.restaurants ORDER BY name")]
    sql(db, "UPDATE restaurant_service.restaurants SET rating = 4.5 WHERE id = ANY(%s::uuid[])", ids[:6])
    publish_as_a_v1_relay(evolution, 18)
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    scope = Ingested(db, [city], datetime.now(UTC), datetime.now(UTC), cursor)
    wait_until(
        lambda: count(cursor, f"SELECT COUNT(*) FROM {evolution.table}") == 18,
        120,
        what="the v1 table to ingest the restaurants the old relay published",
    )

    # The change, in the order of docs/events.md: the registry, Pinot (the column, then a rebuild so that no
    # consuming segment from before the column reads a v2 event), the migration; then a relay with v2.
    apply_subjects(evolution.registry, Codec(settings.endpoints.topic_prefix))
    changes = apply(settings, pinot_dir=restaurants_only(evolution.before.pinot.parent / "pinot_v2"))
    assert f"table {evolution.table}: new columns {COLUMN} answer only after segments roll" in changes
    [spec] = [spec for spec in desired_specs(settings) if spec.name == evolution.table]
    assert rebuild(settings, spec, timeout_s=300).source == "kafka"
    assert migrate(db) == [MIGRATION]

    # After v2: 8 new restaurants with a preparation time, 6 old ones given one (2 of them with their v1
    # events still in the outbox), 2 old ones deactivated (a v2 event, the time still unknown).
    # Rated: Pinot answers a null double as the text '-Infinity', which the comparison would call stale.
    sql(
        db,
        "INSERT INTO restaurant_service.restaurants "
        "(name, cuisine_types, line1, city, location, rating, prep_time_minutes) "
        "SELECT 'New ' || n, ARRAY['pizza'], 'Main street 2', %s, "
        "ST_SetSRID(ST_MakePoint(13.5 + n / 1000.0, 52.5), 4326)::geography, 4.0, 10 + n FROM generate_series(1, 8) n",
        city,
    )
    sql(db, f"UPDATE restaurant_service.restaurants SET {COLUMN} = 25 WHERE id = ANY(%s::uuid[])", ids[4:10])
    sql(db, "UPDATE restaurant_service.restaurants SET is_active = false WHERE id = ANY(%s::uuid[])", ids[10:12])
    versions = dict(sql(db, "SELECT schema_version, count(*) FROM restaurant_service.outbox GROUP BY 1"))
    assert versions == {1: 12, 2: 16}, "v1 events wait in the outbox beside the v2 ones"

    relay = RelayProcess(evolution.services, db, settings.endpoints.topic_prefix)
    try:
        wait_until(lambda: not sql(db, "SELECT 1 FROM restaurant_service.outbox"), 120, what="the relay to drain")
    finally:
        relay.terminate()

    # Nothing lost; a stock consumer reads both versions, as written or as v2.
    committed = {row[0] for row in sql(db, "SELECT event_id::text FROM public.committed_events")}
    topic = Codec(settings.endpoints.topic_prefix).streams["restaurant"].topic
    as_written = read_with_stock_deserializer(evolution, topic, len(committed), None)
    assert {str(event["event_id"]) for event in as_written} == committed
    assert sum(COLUMN in event for event in as_written) == 16, "v2 events carry the field, v1 events do not"
    v2 = json.dumps(Codec().streams["restaurant"].versions[2].raw)
    as_v2 = read_with_stock_deserializer(evolution, topic, len(committed), v2)
    assert sorted(event[COLUMN] is None for event in as_v2) == [False] * 14 + [True] * 32

    # Pinot equals PostgreSQL, the new column included: null where the newest event is v1 (or says null).
    poll(lambda: not compare_state(scope, RESTAURANTS, evolution.table)[1], 180)
    rows, differences = compare_state(scope, RESTAURANTS, evolution.table)
    assert (rows, [str(difference) for difference in differences]) == (32, [])
    held = scope.pinot_rows(f"SELECT {COLUMN}, COUNT(*) FROM {evolution.table} GROUP BY {COLUMN} LIMIT 100")
    assert dict(map(tuple, held)) == {PINOT_NULL_INT: 18, 25: 6, **{10 + n: 1 for n in range(1, 9)}}
