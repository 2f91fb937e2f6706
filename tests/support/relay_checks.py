"""What the relay tests check and ask: the outbox backlog, poison events and dead letters, the lane shares
`nibble relay status` reports, and the order topic read back from Kafka, complete and in order per order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter, defaultdict

import psycopg
from psycopg import sql

from pipeline.contract import catalog
from tests.support.kafka_reader import Received, read_topic
from tests.support.services import Services
from tests.support.workload import EVENTS_PER_ORDER, place_orders

# `nibble relay status` has a row per outbox the relay serves: one per service schema in the catalog.
OUTBOXES = len({stream.outbox for stream in catalog.load().values()})


def backlog(db: str, schema: str = "order_service") -> int:
    """Outbox rows waiting: every stream's, the order ledger's entries beside the order events."""
    with psycopg.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {schema}.outbox").fetchone()[0]


def order_with_payload(db: str, payload: str) -> uuid.UUID:
    """One order placed, its OrderPlaced event's payload replaced by `payload` (an SQL expression of the
    outbox row's `payload`) before any relay reads it: a poison event."""
    with psycopg.connect(db) as conn:
        (order_id,) = place_orders(conn, 1)
        change = sql.SQL("UPDATE order_service.outbox SET payload = {} WHERE aggregate_type = 'order'")
        conn.execute(change.format(sql.SQL(payload)))
    return order_id


def dead_letters(db: str) -> list[tuple[uuid.UUID, str]]:
    """The order outbox's dead letters: aggregate id and error."""
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT aggregate_id, error FROM order_service.outbox_dead_letter").fetchall()


def lane_shares(services: Services, db: str) -> list[list[int]]:
    """Per outbox, how many lanes each relay holds (sorted), from `nibble relay status --json`."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "relay", "status", "--json"],
        env={**os.environ, **services.environ(), "NIBBLE_DATABASE_URL": db},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    return [sorted(len(lanes) for lanes in row["lanes_by_relay_pid"].values()) for row in status]


def read_orders(services: Services, prefix: str, expect_at_least: int) -> list[Received]:
    """The test's order topic from the beginning, once at least `expect_at_least` messages arrived."""
    return read_topic(services.kafka_bootstrap, f"{prefix}nibble.orders", "order", expect_at_least)


def assert_complete_and_ordered(received: list[Received], order_ids: list[uuid.UUID]) -> Counter:
    """Every event of every order present, and per key (order) the first occurrences in position order.
    Returns how often each event id was received (>1 only for re-sent, unacknowledged events)."""
    per_key: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    counts: Counter = Counter()
    for message in received:
        event_id = str(message.record["event_id"])
        counts[event_id] += 1
        if event_id not in seen:
            seen.add(event_id)
            per_key[message.key].append(message.record["outbox_position"])
    assert set(per_key) == {str(order_id) for order_id in order_ids}
    assert all(len(positions) == EVENTS_PER_ORDER for positions in per_key.values())
    assert all(positions == sorted(positions) for positions in per_key.values())
    return counts


def orders_read_back(services: Services, prefix: str, order_ids: list[uuid.UUID]) -> Counter:
    """The orders' events read back, checked complete and in order; how often each event id came."""
    received = read_orders(services, prefix, len(order_ids) * EVENTS_PER_ORDER)
    return assert_complete_and_ordered(received, order_ids)


def assert_only_a_batch_again(services: Services, prefix: str, order_ids: list[uuid.UUID], batch: int) -> None:
    """After a relay's kill -9 mid-drain: every event of every order, in order; only the batch in flight at the
    kill can be sent twice (the same event ids), and nothing else arrives."""
    total = len(order_ids) * EVENTS_PER_ORDER
    received = read_orders(services, prefix, total)
    counts = assert_complete_and_ordered(received, order_ids)
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= batch
    assert len(received) == total + duplicates
