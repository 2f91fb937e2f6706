"""`nibble pinot rebuild`: an orders table of this test's own (on topics of its own) is dropped and rebuilt,
first from Kafka (the compacted topic holds every order), then, once records were deleted from the topic,
through a backfill; each time it equals PostgreSQL row by row (tests/support/exactness.py)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from connectors import kafka
from connectors.pinot import Controller, broker_connection
from pipeline.analytics.rebuild import rebuild, spec_named
from pipeline.analytics.tables import TableSpec
from pipeline.config import Settings
from pipeline.contract.codec import Codec
from pipeline.devstack.generator import CITIES, Generator
from pipeline.outbox.backfill import visible_rows
from tests.conftest import StartRelay
from tests.support.exactness import STATE_TABLES, Difference, Ingested, compare_state, record_committed_events
from tests.support.polling import wait_until
from tests.support.services import Services

ORDERS = 1500
SUFFIX = "-rb"
ORDERS_TABLE = next(spec for spec in STATE_TABLES if spec.table == "orders")


@pytest.fixture
def own_table(services: Services, db: str, prefix: str) -> Iterator[tuple[Settings, TableSpec]]:
    """A copy of the orders table under a name of its own, reading this test's orders topic."""
    settings = services.settings(prefix)
    settings = settings.model_copy(update={"endpoints": settings.endpoints.model_copy(update={"database_url": db})})
    orders = spec_named(settings, "orders")
    name = f"rb_{uuid.uuid4().hex[:8]}"
    table = copy.deepcopy(orders.table)
    table["tableName"] = name
    table["segmentsConfig"]["schemaName"] = name
    spec = TableSpec(name, {**copy.deepcopy(orders.schema), "schemaName": name}, table)
    e = settings.endpoints
    kafka.ensure_topics(e.kafka_bootstrap_servers, Codec(prefix).topics, e.kafka_topic_partitions, e.topic_config)
    controller = Controller(e.pinot_controller_url)
    controller.put_schema(copy.deepcopy(spec.schema), exists=False)
    controller.put_table(copy.deepcopy(spec.table), exists=False)
    try:
        yield settings, spec
    finally:
        controller.delete_table(name)
        wait_until(lambda: not controller.hosted(name), 120, what=f"{name} to be dropped")
        requests.delete(f"{e.pinot_controller_url}/schemas/{name}", timeout=60)


def _differences(settings: Settings, name: str, db: str) -> list[Difference]:
    """The rebuilt copy `name` of the orders table against PostgreSQL's orders, row by row."""
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    now = datetime.now(UTC)
    scope = Ingested(db, [city + SUFFIX for city in CITIES], now, now, cursor)
    return compare_state(scope, ORDERS_TABLE, name)[1]


def test_a_rebuilt_table_equals_postgres_row_by_row_from_kafka_and_through_a_backfill(
    own_table: tuple[Settings, TableSpec], db: str, start_relay: StartRelay
) -> None:
    settings, spec = own_table
    record_committed_events(db)
    Generator(db, seed=5, city_suffix=SUFFIX).run_batch(ORDERS, datetime.now(UTC) - timedelta(hours=5), per_minute=60)
    start_relay()
    expected = visible_rows(db)["orders"]
    with psycopg.connect(db) as conn:
        statuses = {status for (status,) in conn.execute("SELECT DISTINCT status FROM order_service.orders")}
    assert statuses >= {"delivered", "cancelled"}
    wait_until(lambda: _differences(settings, spec.name, db) == [], 120, what="the first fill")

    steps: list[str] = []
    report = rebuild(settings, spec, timeout_s=300, on_step=steps.append)
    assert (report.source, report.pinot_rows, report.postgres_rows) == ("kafka", expected, expected)
    assert any("waiting until no server holds it" in step for step in steps)
    assert [str(d) for d in _differences(settings, spec.name, db)] == []

    # A topic from before compaction, whose retention deleted its oldest records: Kafka alone no longer has
    # every order. (Kafka deletes records only from a topic whose policy includes delete.)
    e = settings.endpoints
    topic = spec.topic
    kafka.ensure_topics(e.kafka_bootstrap_servers, [topic], 4, {**e.topic_config, "cleanup.policy": "compact,delete"})
    admin = AdminClient({"bootstrap.servers": e.kafka_bootstrap_servers})
    for future in admin.delete_records([TopicPartition(topic, 0, 10)]).values():
        future.result(timeout=20)
    kafka.ensure_topics(e.kafka_bootstrap_servers, [topic], 4, e.topic_config)

    report = rebuild(settings, spec, timeout_s=300)
    assert (report.source, report.pinot_rows, report.postgres_rows) == ("backfill", expected, expected)
    assert [str(d) for d in _differences(settings, spec.name, db)] == []
