"""The whole pipeline on the real stack: generated activity -> triggers -> relay (killed with -9 once and
restarted) -> Kafka -> Pinot. Pinot's answers must equal PostgreSQL's ground truth exactly, and every
query of the analysts' library is checked against a value computed from PostgreSQL.

The tables and topics are the real ones, shared with everything else the stack has seen; this module's
data lives in cities of its own (a random suffix), and every comparison (tests/support/exactness.py) is
restricted to them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.pinot import broker_connection
from pipeline.analytics.queries import library
from pipeline.analytics.tables import apply
from pipeline.devstack.generator import CITIES, Generator
from tests.support.database import scratch_database
from tests.support.exactness import (
    QUERY_CHECKS,
    Ingested,
    assert_deliveries_equal,
    assert_order_history_counted_once,
    assert_orders_equal,
    backlog,
    ledger_ingested,
    outbox_counts,
)
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services

ORDERS = 3000


@pytest.fixture(scope="module")
def ingested(services: Services) -> Iterator[Ingested]:
    with scratch_database(services.database_url, "e2e", migrated=True) as db:
        apply(services.settings())
        suffix = f"-{uuid.uuid4().hex[:6]}"
        cities = [city + suffix for city in CITIES]
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        generator = Generator(db, seed=42, city_suffix=suffix)
        generator.run_batch(ORDERS, start, per_minute=25)
        # Some orders still under way, so "active right now" has something to count.
        with psycopg.connect(db) as conn:
            now = datetime.now(UTC)
            generator.place(conn, 40, now - timedelta(minutes=10))
            generator.advance(conn, now)
        expected_order_events, expected_delivery_events = outbox_counts(db, cities)

        relays = [RelayProcess(services, db, relay_batch_size="500")]
        try:
            total = backlog(db)
            wait_until(lambda: backlog(db) < total * 0.7, 60, what="the first relay to be mid-stream")
            relays[0].kill()  # kill -9 mid-stream: the restarted relay re-sends the unacknowledged batch
            assert backlog(db) > 0
            relays.append(RelayProcess(services, db, relay_batch_size="500"))
            wait_until(lambda: backlog(db) == 0, 120, what="the restarted relay to drain every outbox")

            cursor = broker_connection(services.pinot_broker_url).cursor()
            data = Ingested(db, cities, start - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1), cursor)

            def ingested_all() -> bool:
                (orders,) = data.pinot_rows(f"SELECT COUNT(*) FROM order_events WHERE city IN ({data.city_list})")[0]
                (deliveries,) = data.pinot_rows(
                    f"SELECT COUNT(*) FROM delivery_events WHERE city IN ({data.city_list})"
                )[0]
                return (orders, deliveries) == (expected_order_events, expected_delivery_events)

            wait_until(ingested_all, 120, what="Pinot to ingest every event exactly once")
            wait_until(lambda: ledger_ingested(data), 120, what="Pinot's order ledger to sum to PostgreSQL's orders")
            yield data
        finally:
            for relay in relays:
                if relay.running:
                    relay.kill()


# --- Pinot equals PostgreSQL ----------------------------------------------------------------------------


def test_order_counts_per_status_and_city_and_gmv_to_the_cent(ingested: Ingested) -> None:
    assert_orders_equal(ingested)


def test_delivery_counts_per_status_and_city(ingested: Ingested) -> None:
    assert_deliveries_equal(ingested)


def test_the_event_history_counts_every_event_once_despite_the_kill(ingested: Ingested) -> None:
    assert_order_history_counted_once(ingested)


def test_every_library_query_is_checked() -> None:
    assert set(QUERY_CHECKS) == set(library())


@pytest.mark.parametrize("name", sorted(QUERY_CHECKS))
def test_library_query_equals_postgres(ingested: Ingested, name: str) -> None:
    QUERY_CHECKS[name](ingested)
