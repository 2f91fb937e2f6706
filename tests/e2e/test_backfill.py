"""Installing the pipeline on a database that already holds 50,000 orders: nothing was ever published (no
relay ran, the outboxes were emptied), then `nibble backfill` runs while a writer keeps changing orders and
deliveries, is killed with kill -9 halfway through the orders and started again. At the end Pinot's
`orders` and `deliveries` equal PostgreSQL row for row, and every library query equals PostgreSQL's answer
(tests/support/exactness.py; the funnel over the steps taken since the installation, as history from before
it is not reconstructed).
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    assert_orders_equal,
    backlog,
    ledger_ingested,
)
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.writer import Writer

ORDERS = 50_000
OUTBOXES = ("order_service", "driver_service", "restaurant_service")

ORDER_ROWS_PG = """
SELECT id::text, status, item_count, (subtotal * 100)::bigint, (tip * 100)::bigint, (total * 100)::bigint,
       coalesce(payment_status, 'null'), coalesce(cancel_reason, 'null'),
       (extract(epoch FROM date_trunc('milliseconds', updated_at)) * 1000)::bigint
FROM order_service.orders WHERE city = ANY(%s) AND (announced OR item_count > 0) ORDER BY 1
"""
ORDER_ROWS_PINOT = """
SELECT order_id, status, item_count, subtotal_cents, tip_cents, total_cents, payment_status, cancel_reason, updated_at
FROM orders WHERE city IN ({cities}) ORDER BY order_id LIMIT 1000000
"""
DELIVERY_ROWS_PG = """
SELECT id::text, order_id::text, status, coalesce(driver_id::text, 'null'), coalesce(distance_m, 0),
       (extract(epoch FROM date_trunc('milliseconds', updated_at)) * 1000)::bigint
FROM driver_service.deliveries WHERE city = ANY(%s) ORDER BY 1
"""
DELIVERY_ROWS_PINOT = """
SELECT delivery_id, order_id, status, driver_id, distance_m, updated_at
FROM deliveries WHERE city IN ({cities}) ORDER BY delivery_id LIMIT 1000000
"""


def _progress(db: str, table: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT rows_done FROM backfill_progress WHERE table_name = %s", (table,)).fetchone()
    return row[0] if row else 0


@pytest.fixture(scope="module")
def backfilled(services: Services) -> Iterator[Ingested]:
    with scratch_database(services.database_url, "backfill", migrated=True) as db:
        apply(services.settings())
        run = uuid.uuid4()
        suffix = f"-{run.hex[:6]}"
        cities = [city + suffix for city in CITIES]
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
        # A seed of this run's own: the shared upsert tables key rows by id, and a seed's ids repeat.
        generator = Generator(db, seed=run.int % 2**32, city_suffix=suffix)
        generator.run_batch(ORDERS, start, per_minute=1000)
        with psycopg.connect(db) as conn:
            under_way = [order.id for order in generator.place(conn, 300, datetime.now(UTC) - timedelta(minutes=5))]
            conn.commit()
            # The pipeline arrives now: nothing of the above was ever published, and the order ledger has
            # counted none of it (as migration 0015 lists the visible orders of a database that predates it).
            for schema in OUTBOXES:
                conn.execute(f"DELETE FROM {schema}.outbox")
            conn.execute(
                "INSERT INTO order_service.orders_outside_ledger "
                "SELECT id FROM order_service.orders WHERE announced OR item_count > 0"
            )
            conn.commit()
            installed_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            orders = [row[0] for row in conn.execute("SELECT id FROM order_service.orders")]
            deliveries = [row[0] for row in conn.execute("SELECT id FROM driver_service.deliveries")]

        relay = RelayProcess(services, db, relay_batch_size="2000")
        writer = Writer(db, orders, deliveries, under_way, rate=100)
        env = {**os.environ, **services.environ(), "NIBBLE_DATABASE_URL": db}
        command = [sys.executable, "-m", "pipeline", "backfill", "--batch", "500"]
        try:
            writer.start()
            first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
            wait_until(lambda: _progress(db, "orders") >= ORDERS // 2, 120, what="the backfill halfway through orders")
            first.kill()  # kill -9: the chunk in flight rolls back, the restart resumes after the last committed one
            first.wait()
            assert _progress(db, "orders") < ORDERS
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)
            assert _progress(db, "deliveries") == len(deliveries)
            latencies = writer.stop()
            assert len(latencies) > 100, "the writer kept writing all along"
            wait_until(lambda: backlog(db) == 0, 300, what="the relay to publish every snapshot and change")

            cursor = broker_connection(services.pinot_broker_url).cursor()
            data = Ingested(
                db, cities, start - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1), cursor, installed_at
            )

            wait_until(
                lambda: (
                    _same(data, ORDER_ROWS_PG, ORDER_ROWS_PINOT)
                    and _same(data, DELIVERY_ROWS_PG, DELIVERY_ROWS_PINOT)
                    and ledger_ingested(data)
                ),
                300,
                what="Pinot's orders, deliveries and order ledger to equal PostgreSQL's",
            )
            yield data
        finally:
            if writer.is_alive():
                writer.stopping.set()
            if relay.running:
                relay.kill()


def _rows(data: Ingested, pg_query: str, pinot_query: str) -> tuple[list[tuple], list[tuple]]:
    truth = sorted(tuple(row) for row in data.pg(pg_query, data.cities))
    pinot = sorted(tuple(row) for row in data.pinot_rows(pinot_query.format(cities=data.city_list)))
    return truth, pinot


def _same(data: Ingested, pg_query: str, pinot_query: str) -> bool:
    truth, pinot = _rows(data, pg_query, pinot_query)
    return truth == pinot


def test_orders_equal_postgres_row_for_row(backfilled: Ingested) -> None:
    truth, pinot = _rows(backfilled, ORDER_ROWS_PG, ORDER_ROWS_PINOT)
    assert len(truth) > ORDERS and pinot == truth
    assert_orders_equal(backfilled)


def test_deliveries_equal_postgres_row_for_row(backfilled: Ingested) -> None:
    truth, pinot = _rows(backfilled, DELIVERY_ROWS_PG, DELIVERY_ROWS_PINOT)
    assert len(truth) > ORDERS * 0.8 and pinot == truth
    assert_deliveries_equal(backfilled)


def test_snapshots_are_not_counted_as_steps(backfilled: Ingested) -> None:
    [[snapshots]] = backfilled.pinot_rows(
        f"SELECT COUNT(*) FROM order_events WHERE event_type = 'OrderSnapshot' AND city IN ({backfilled.city_list})"
    )
    [[placed]] = backfilled.pinot_rows(
        f"SELECT COUNT(*) FROM order_events WHERE event_type = 'OrderPlaced' AND city IN ({backfilled.city_list})"
    )
    assert snapshots >= ORDERS and placed == 0, "every order arrived as a snapshot, none as a placement"


def test_every_library_query_is_checked() -> None:
    assert set(QUERY_CHECKS) == set(library())


@pytest.mark.parametrize("name", sorted(QUERY_CHECKS))
def test_library_query_equals_postgres(backfilled: Ingested, name: str) -> None:
    QUERY_CHECKS[name](backfilled)
