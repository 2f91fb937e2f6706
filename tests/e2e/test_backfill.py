"""Installing the pipeline on a database that already holds 50,000 orders: nothing was ever published (no
relay ran, the outboxes were emptied), then `nibble backfill` runs while a writer keeps changing orders and
deliveries, is killed with kill -9 halfway through the orders and started again. At the end every Pinot
table equals PostgreSQL row by row, with every event committed since the installation (snapshots included)
exactly once, and every library query equals PostgreSQL's answer (tests/support/exactness.py; the funnel over
the steps taken since the installation, as history from before it is not reconstructed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.pinot import broker_connection
from pipeline.analytics.queries import library
from pipeline.devstack.generator import Generator
from tests.support.exactness import (
    OUTBOXES,
    QUERY_CHECKS,
    Comparison,
    Ingested,
    await_pinot,
    backlog,
    forget_committed_events,
    recorded_run,
)
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.ticket_queries import TICKET_QUERY_CHECKS
from tests.support.writer import Writer

ORDERS = 50_000


def _progress(db: str, table: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT rows_done FROM backfill_progress WHERE table_name = %s", (table,)).fetchone()
    return row[0] if row else 0


@pytest.fixture(scope="module")
def backfill_run(services: Services) -> Iterator[tuple[Ingested, Comparison]]:
    with recorded_run(services, "backfill") as recorded:
        db, cities = recorded.db, recorded.cities
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
        # A seed of this run's own: the shared upsert tables key rows by id, and a seed's ids repeat.
        generator = Generator(db, seed=int(recorded.suffix[1:], 16), city_suffix=recorded.suffix)
        generator.run_batch(ORDERS, start, per_minute=1000)
        with psycopg.connect(db) as conn:
            under_way = [order.id for order in generator.place(conn, 300, datetime.now(UTC) - timedelta(minutes=5))]
            conn.commit()
            # The pipeline arrives now: nothing of the above was ever published, and the order ledger has
            # counted none of it (as migration 0015 lists the visible orders of a database that predates it).
            for schema in OUTBOXES:
                conn.execute(f"DELETE FROM {schema}.outbox")
            forget_committed_events(conn)
            conn.execute(
                "INSERT INTO order_service.orders_outside_ledger "
                "SELECT id FROM order_service.orders o WHERE order_service.is_visible(o)"
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
            yield data, await_pinot(data, 300)
        finally:
            if writer.is_alive():
                writer.stopping.set()
            if relay.running:
                relay.kill()


@pytest.fixture(scope="module")
def backfilled(backfill_run: tuple[Ingested, Comparison]) -> Ingested:
    return backfill_run[0]


def test_pinot_equals_postgres_row_by_row_with_every_event_once(backfill_run: tuple[Ingested, Comparison]) -> None:
    _, comparison = backfill_run
    assert comparison.equal, comparison.report()
    assert comparison.rows["orders"] > ORDERS and comparison.rows["deliveries"] > ORDERS * 0.8


def test_snapshots_are_not_counted_as_steps(backfilled: Ingested) -> None:
    [[snapshots]] = backfilled.pinot_rows(
        f"SELECT COUNT(*) FROM order_events WHERE event_type = 'OrderSnapshot' AND city IN ({backfilled.city_list})"
    )
    [[placed]] = backfilled.pinot_rows(
        f"SELECT COUNT(*) FROM order_events WHERE event_type = 'OrderPlaced' AND city IN ({backfilled.city_list})"
    )
    assert snapshots >= ORDERS and placed == 0, "every order arrived as a snapshot, none as a placement"


CHECKS = {**QUERY_CHECKS, **TICKET_QUERY_CHECKS}


def test_every_library_query_is_checked() -> None:
    assert set(CHECKS) == set(library())


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_library_query_equals_postgres(backfilled: Ingested, name: str) -> None:
    CHECKS[name](backfilled)
