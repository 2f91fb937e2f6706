"""Faults under load, on the real local stack: a writer committing orders, the relay publishing them and
Pinot ingesting them while a service is killed or restarted. Each test ends with Pinot equal to PostgreSQL
row by row and every committed event exactly once (tests/support/exactness.py), every committed event in
Kafka, and prints one line per fault: how long the service was away, how long the pipeline then took to
show a fresh commit in Pinot, and the duplicates seen in Kafka (at-least-once: allowed).

A "mid-X" fault proves X was under way when it struck, on a burst placed in a city of its own (so the
writer's steady flow cannot satisfy the condition): mid-drain, part of the burst published (gone from the
outbox, which the relay empties only once Kafka acknowledged) and part still waiting; mid-ingestion, Pinot's
count of the burst's events below what Kafka acknowledged and rising.

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

import pytest
import requests

from connectors.pinot import broker_connection
from pipeline.analytics.tables import apply
from pipeline.config import load_settings
from pipeline.devstack.stack import LocalStack
from tests.support.database import scratch_database
from tests.support.exactness import Ingested, await_pinot, record_committed_events
from tests.support.load import TOPICS, Load, Writer, end_offsets, read_orders
from tests.support.polling import wait_until
from tests.support.services import Services

pytestmark = pytest.mark.slow

BURST = 20_000  # orders placed in one transaction: an OrderPlaced and a ledger entry each
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
            record_committed_events(db)
            apply(services.settings())
            load.start_offsets = {topic: end_offsets(services.kafka_bootstrap, topic) for topic in TOPICS.values()}
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
    """Stop writing, let everything drain, then: Pinot equals PostgreSQL, every event in Kafka; count duplicates."""
    load.writer.stop()
    wait_until(lambda: load.backlog() == 0, 240, what="the relay to drain the outbox")
    expected = load.committed_events()
    assert len(expected) > 100, "the load wrote too little to prove anything"
    window = datetime.now(UTC)
    cursor = broker_connection(load.services.pinot_broker_url).cursor()
    comparison = await_pinot(Ingested(load.db, load.cities, window - timedelta(days=1), window, cursor), 300)
    in_kafka = load.kafka_event_ids()
    kafka_duplicates = sum(count - 1 for count in in_kafka.values())
    print(
        f"\nFAULT {fault}: away {recovery.away_s:.1f} s, fresh commit in Pinot {recovery.fresh_s:.1f} s after, "
        f"{len(expected)} events, duplicates in Kafka {kafka_duplicates}, "
        f"Pinot equals PostgreSQL: {comparison.equal}, writer ticks failed {load.writer.failed_ticks}"
    )
    assert comparison.equal, comparison.report()
    assert set(in_kafka) == expected, "Kafka lacks events PostgreSQL committed"


def wait_until_mid_drain(load: Load, rows: int) -> None:
    """Until the relay has published part of the burst and at least half of it still waits. Polled every
    0.2 s, a relay at ~30,000 rows/s drains ~6,000 between two looks: a look lands in that window."""
    wait_until(lambda: rows / 2 <= load.burst_waiting() < rows, 60, what="the relay to be mid-drain of the burst")


def test_postgres_restarted_immediately_mid_drain(load: Load, stack: LocalStack) -> None:
    rows = load.burst(BURST)
    wait_until_mid_drain(load, rows)
    load.relay.pause()  # the outbox exactly as the crash finds it
    waiting = load.burst_waiting()
    assert 0 < waiting < rows, f"mid-drain: {rows - waiting} of the burst's {rows} rows published, {waiting} waiting"
    started = time.monotonic()
    stack.restart("postgres", hard=True)  # pg_ctl restart -m immediate: no checkpoint, crash recovery
    load.relay.resume()  # its connection is gone, as if it had been running: it reconnects
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    settle_and_compare(load, f"postgres pg_ctl restart -m immediate mid-drain ({waiting} of {rows} waiting)", recovery)


def test_kafka_killed_and_restarted_mid_drain(load: Load, stack: LocalStack) -> None:
    rows = load.burst(BURST)
    wait_until_mid_drain(load, rows)
    started = time.monotonic()
    stack.kill("kafka")
    # Rows leave the outbox only once Kafka acknowledged them: those still there were waiting at the kill.
    waiting = load.burst_waiting()
    assert 0 < waiting < rows, f"mid-drain: {rows - waiting} of the burst's {rows} rows published, {waiting} waiting"
    stack.restart("kafka")  # down: started, and waited for metadata
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    settle_and_compare(load, f"kafka kill -9 + restart mid-drain ({waiting} of {rows} waiting)", recovery)


def test_pinot_server_killed_and_restarted_mid_ingestion(load: Load, stack: LocalStack) -> None:
    # Three bursts' worth: the faster relay let Pinot ingest one burst between two looks of `ingesting`.
    load.burst(3 * BURST)
    seen: list[tuple[int, int]] = []  # (published, ingested) order events of the burst, per look

    def ingesting() -> bool:
        published = load.burst_published()  # read first: Kafka had at least this many when Pinot was asked
        seen.append((published, load.pinot_burst_events()))
        return len(seen) > 1 and seen[-2][1] < seen[-1][1] < published

    wait_until(ingesting, 120, what="Pinot to be ingesting the burst: below what Kafka holds, and rising")
    started = time.monotonic()
    stack.kill("pinot-server")
    stack.restart("pinot-server")  # resumes from committed offsets; re-read events dedup'd
    healthy = time.monotonic()
    recovery = Recovery(healthy - started, fresh_commit_visible(load, healthy))
    (_, before), (published, ingested) = seen[-2:]
    fault = f"pinot-server kill -9 + restart mid-ingestion ({before} then {ingested} of {published} ingested)"
    settle_and_compare(load, fault, recovery)


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
    # The age gauge shows the outage; it lags the truth by at most the delivery timeout plus the back-off.
    wait_until(
        lambda: (oldest_age_s(load) or 0) >= KAFKA_OUTAGE_S / 2,
        KAFKA_OUTAGE_S + 60,
        what="the relay's oldest-event age to grow while Kafka is away",
    )
    time.sleep(max(0.0, started + KAFKA_OUTAGE_S - time.monotonic()))  # the outage lasts its full length
    backlog = load.backlog()
    age = oldest_age_s(load) or 0.0
    assert backlog > 0
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
    start = load.start_offsets["nibble.orders"]
    for order_id, event_id, position in read_orders(load.services.kafka_bootstrap, start, events):
        if event_id not in seen:
            seen.add(event_id)
            first_seen.setdefault(order_id, []).append(position)
    assert all(positions == sorted(positions) for positions in first_seen.values())
