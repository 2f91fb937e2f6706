"""Faults under load, on the real local stack: a writer committing orders, the relay publishing them and
Pinot ingesting them while a service is killed or restarted. Each test ends with Pinot equal to PostgreSQL
(orders per status and GMV to the cent, every event exactly once) and prints one line per fault: how long
the service was away, how long the pipeline then took to show a fresh commit in Pinot, and the duplicates
seen in Kafka (at-least-once: allowed) and in Pinot's answers (must be none).

Fault injection uses the local stack (`LocalStack.kill` / `restart`, as `nibble stack kill|restart`), so
these tests need it; every test restarts what it killed and waits for health before it ends, so the tests
after it find the stack whole. The relay-without-Kafka outage is NIBBLE_FAULT_KAFKA_OUTAGE_S long (default
60 s; the issue's 10 minutes: NIBBLE_FAULT_KAFKA_OUTAGE_S=600).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pinotdb.exceptions
import psycopg
import pytest
import requests

from connectors.pinot import broker_connection
from pipeline.analytics.tables import apply
from pipeline.config import load_settings
from pipeline.devstack.stack import LocalStack
from tests.support.database import scratch_database
from tests.support.exactness import Ingested, assert_orders_equal
from tests.support.load import Load, Writer, end_offsets, read_orders
from tests.support.polling import wait_until
from tests.support.services import Services

pytestmark = pytest.mark.slow

MID_DRAIN_BURST = 20_000  # orders placed in one transaction, one event each
MID_DRAIN_ROWS = 2 * MID_DRAIN_BURST  # the outbox rows of the burst: each order's OrderPlaced and ledger entry
KAFKA_OUTAGE_S = float(os.environ.get("NIBBLE_FAULT_KAFKA_OUTAGE_S", "60"))


@pytest.fixture
def stack(services: Services) -> LocalStack:
    return LocalStack(load_settings())


@pytest.fixture
def load(services: Services, stack: LocalStack) -> Iterator[Load]:
    """A writer, a relay and Pinot's ingestion all running on a database and a city of their own."""
    city = f"Faultville-{uuid.uuid4().hex[:6]}"
    with scratch_database(services.database_url, prefix="fault", migrated=True) as db:
        load = Load(services, db, city, Writer(db, city))
        try:
            with psycopg.connect(db) as conn:
                conn.execute("CREATE TABLE public.fault_events (event_id uuid PRIMARY KEY)")
            apply(services.settings())
            load.start_offsets = end_offsets(services.kafka_bootstrap)
            load.start_relay()
            load.writer.start()
            wait_until(lambda: load.writer.last_commit is not None, 30, what="the writer's first commit")
            first = load.writer.last_commit[1]
            wait_until(lambda: load.pinot_has_order(first), 120, what="the pipeline to flow before the fault")
            yield load
        finally:
            load.writer.stop()
            load.stop_relay()
            # Whatever the test killed is back and healthy before the next test, and before the database is
            # dropped (PostgreSQL may be the service it killed).
            stack.up()


@dataclass(frozen=True)
class Recovery:
    away_s: float  # fault injected -> service healthy again
    fresh_s: float  # service healthy -> a commit made after that is queryable in Pinot


def fresh_commit_visible(load: Load, since: float, timeout_s: float = 240) -> float:
    """Seconds from `since` until the first commit made after it is queryable in Pinot."""
    wait_until(lambda: load.writer.last_commit and load.writer.last_commit[0] > since, 60, what="a fresh commit")
    order_id = load.writer.last_commit[1]
    wait_until(lambda: load.pinot_has_order(order_id), timeout_s, what="a commit after the fault to reach Pinot")
    return time.monotonic() - since


def settle_and_compare(load: Load, fault: str, recovery: Recovery) -> None:
    """Stop writing, let everything drain, then: Pinot equals PostgreSQL, and count duplicates."""
    load.writer.stop()
    wait_until(lambda: load.backlog() == 0, 240, what="the relay to drain the outbox")
    expected = load.committed_events()
    assert len(expected) > 100, "the load wrote too little to prove anything"

    def pinot_has_every_event() -> bool:
        try:
            return set(load.pinot_event_ids()) == expected
        except (pinotdb.exceptions.Error, httpx.HTTPError):  # the broker may still be on its way back
            return False

    wait_until(pinot_has_every_event, 300, what="Pinot to hold every committed event")
    window = datetime.now(UTC)
    cursor = broker_connection(load.services.pinot_broker_url).cursor()
    assert_orders_equal(Ingested(load.db, [load.city], window - timedelta(days=1), window, cursor))
    in_pinot = load.pinot_event_ids()
    pinot_duplicates = sum(count - 1 for count in in_pinot.values())
    in_kafka = load.kafka_event_ids()
    kafka_duplicates = sum(count - 1 for count in in_kafka.values())
    print(
        f"\nFAULT {fault}: away {recovery.away_s:.1f} s, fresh commit in Pinot {recovery.fresh_s:.1f} s after, "
        f"{len(expected)} events, duplicates in Kafka {kafka_duplicates}, in Pinot's answers {pinot_duplicates}, "
        f"writer ticks failed {load.writer.failed_ticks}"
    )
    assert set(in_kafka) == expected, "Kafka lacks events PostgreSQL committed"
    assert pinot_duplicates == 0, "Pinot counts an event twice"


def burst(load: Load, orders: int) -> None:
    """A backlog for the relay to drain: `orders` placed in one transaction (events recorded)."""
    with psycopg.connect(load.db) as conn:
        load.writer.place(conn, [str(uuid.uuid4()) for _ in range(orders)])


def wait_until_mid_drain(load: Load) -> None:
    # Polled every 0.2 s, a relay at ~30,000 rows/s drains ~6,000 between two looks: the burst is large
    # enough that a look always lands while most of it is still waiting.
    wait_until(lambda: 0 < load.backlog() < MID_DRAIN_ROWS * 0.95, 60, what="the relay to be mid-drain")


def test_postgres_restarted_immediately_mid_drain(load: Load, stack: LocalStack) -> None:
    burst(load, MID_DRAIN_BURST)
    wait_until_mid_drain(load)
    started = time.monotonic()
    stack.restart("postgres", hard=True)  # pg_ctl restart -m immediate: no checkpoint, crash recovery
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    settle_and_compare(load, "postgres pg_ctl restart -m immediate mid-drain", recovery)


def test_kafka_killed_and_restarted_mid_drain(load: Load, stack: LocalStack) -> None:
    burst(load, MID_DRAIN_BURST)
    wait_until_mid_drain(load)
    started = time.monotonic()
    stack.restart("kafka", hard=True)  # kill -9, then start and wait for metadata
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    settle_and_compare(load, "kafka kill -9 + restart mid-drain", recovery)


def test_pinot_server_killed_and_restarted_mid_ingestion(load: Load, stack: LocalStack) -> None:
    burst(load, 2000)
    started = time.monotonic()
    stack.restart("pinot-server", hard=True)  # resumes from committed offsets; re-read events dedup'd
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    settle_and_compare(load, "pinot-server kill -9 + restart mid-ingestion", recovery)


def test_pinot_broker_down_30_s_queries_fail_clearly(load: Load, stack: LocalStack, services: Services) -> None:
    started = time.monotonic()
    stack.kill("pinot-broker")
    query = subprocess.run(
        [sys.executable, "-m", "pipeline", "query", "gmv_by_city", "--city", load.city],
        env={**os.environ, **services.environ()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert query.returncode != 0
    assert len(query.stderr.strip().splitlines()) == 1, query.stderr
    assert "Pinot broker" in query.stderr and "Traceback" not in query.stderr
    time.sleep(max(0.0, 30 - (time.monotonic() - started)))
    stack.restart("pinot-broker")
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    settle_and_compare(load, "pinot-broker down 30 s", recovery)


def oldest_age_s(load: Load) -> float | None:
    """The relay's `nibble_relay_oldest_event_age_seconds` for the order outbox; None before it reports one."""
    try:
        text = requests.get(f"http://127.0.0.1:{load.metrics_port}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    match = re.search(r'nibble_relay_oldest_event_age_seconds\{outbox="order_service"\} ([0-9.e+]+)', text)
    return float(match.group(1)) if match else None


def test_relay_without_kafka_keeps_the_backlog_and_drains_it_in_order(load: Load, stack: LocalStack) -> None:
    # A delivery timeout of 10 s: the relay notices the outage, and refreshes the backlog's age, sooner.
    load.stop_relay()
    load.start_relay(relay_delivery_timeout_ms="10000")
    wait_until(lambda: oldest_age_s(load) is not None, 60, what="the new relay to report its backlog")
    started = time.monotonic()
    stack.kill("kafka")
    ages = []
    while time.monotonic() - started < KAFKA_OUTAGE_S:
        ages.append(oldest_age_s(load) or 0.0)
        time.sleep(2)
    backlog = load.backlog()
    age = max(ages)
    assert backlog > 0 and age >= KAFKA_OUTAGE_S * 0.6, (backlog, ages)
    stack.restart("kafka")
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    wait_until(lambda: (oldest_age_s(load) or 0) < 10, 120, what="the backlog age to fall once Kafka is back")
    fault = f"relay without Kafka {KAFKA_OUTAGE_S:.0f} s (backlog {backlog} rows, oldest {age:.0f} s old)"
    settle_and_compare(load, fault, recovery)
    # In order: per order, the first time each event appears in Kafka follows outbox order.
    first_seen: dict[str, list[int]] = {}
    seen: set[str] = set()
    events = load.committed_events()
    for order_id, event_id, position in read_orders(load.services.kafka_bootstrap, load.start_offsets, events):
        if event_id not in seen:
            seen.add(event_id)
            first_seen.setdefault(order_id, []).append(position)
    assert all(positions == sorted(positions) for positions in first_seen.values())
