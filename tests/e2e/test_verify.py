"""`nibble verify` and `nibble trace` on the real stack: every kind of drift injected by hand is named, exactly
those aggregates and no more; `--repair` heals what an event can heal; a live writer and relay never make it
cry wolf; the watch serves its gauges.

The Pinot tables and topics are the shared ones; this module's data lives in cities of its own (a random
suffix) and every verification is scoped to them (`--city`). Cities 0-2 get the drift `--repair` heals,
city 3 the drift it cannot (an extra row, duplicated events).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import Producer

from connectors.kafka import producer_config
from connectors.pinot import broker_connection
from pipeline.analytics.tables import apply
from pipeline.analytics.verify import Scope, Verifier
from pipeline.contract.codec import Codec
from pipeline.contract.rows import OutboxRow
from pipeline.devstack.generator import CITIES, Generator
from tests.support.data_keys import hold_keys
from tests.support.database import scratch_database
from tests.support.exactness import backlog
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.writer import Writer

ORDERS = 160
# Upper bounds of the waits for events (Pinot consuming, a relay publishing), generous for a shared machine.
SETTLE_S = 300
OUTBOX_ROW = (
    "SELECT position, event_id::text, aggregate_type, aggregate_id::text, event_type, payload::text, "
    "schema_version, txid::text::bigint, occurred_at FROM order_service.outbox "
    "WHERE aggregate_id = %s AND aggregate_type = 'order' ORDER BY position"
)


@dataclass
class World:
    services: Services
    db: str
    cities: list[str]
    generator: Generator
    relay: RelayProcess

    def verifier(self) -> Verifier:
        settings = self.services.settings()
        endpoints = settings.endpoints.model_copy(update={"database_url": self.db})
        return Verifier(settings.model_copy(update={"endpoints": endpoints}), settle_timeout_s=SETTLE_S)

    def scope(self, *cities: str) -> Scope:
        return Scope(cities=tuple(cities or self.cities), until=datetime.now(UTC) + timedelta(minutes=1))

    def nibble(self, *args: str, cities: list[str] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        scope = [arg for city in (self.cities if cities is None else cities) for arg in ("--city", city)]
        environ = {**os.environ, **self.services.environ(), "NIBBLE_DATABASE_URL": self.db, **env}
        command = [sys.executable, "-m", "pipeline", *args, *scope]
        if args[0] == "verify":
            command += ["--settle-timeout", str(SETTLE_S)]
        return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=1200)

    def pg(self, query: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.db, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def restart_relay(self) -> None:
        if self.relay.running:
            self.relay.terminate()
        self.relay = RelayProcess(self.services, self.db)


@pytest.fixture(scope="module")
def world(services: Services) -> Iterator[World]:
    with scratch_database(services.database_url, "verify", migrated=True) as db:
        apply(services.settings())
        suffix = f"-{uuid.uuid4().hex[:6]}"
        generator = Generator(db, seed=23, city_suffix=suffix)
        generator.run_batch(ORDERS, datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2), per_minute=8)
        data = World(services, db, [city + suffix for city in CITIES], generator, RelayProcess(services, db))
        try:
            wait_until(lambda: backlog(db) == 0, SETTLE_S, what="the relay to drain the outboxes")
            verifier = data.verifier()
            wait_until(lambda: verifier.verify(data.scope()).equal, SETTLE_S, what="Pinot to equal PostgreSQL")
            yield data
        finally:
            if data.relay.running:
                data.relay.kill()


def verified(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.stdout, result.stderr
    return json.loads(result.stdout[result.stdout.index("{") :])


def named(report: dict) -> set[tuple[str, str, str]]:
    return {(s["stream"], a["kind"], a["aggregate_id"]) for s in report["streams"] for a in s["aggregates"]}


# --- a quiet pipeline ----------------------------------------------------------------------------------


def test_equal_exits_0_and_every_stream_is_compared(world: World) -> None:
    result = world.nibble("verify", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = verified(result)
    assert report["equal"] and named(report) == set()
    buckets = {s["stream"]: s["buckets"] for s in report["streams"]}
    assert set(buckets) == {
        "orders",
        "order_ledger",
        "order_events",
        "deliveries",
        "delivery_events",
        "drivers",
        "restaurants",
    }
    assert all(count > 0 for count in buckets.values()), buckets  # something was compared everywhere
    # its load on Pinot, as the broker reported it: a query per stream at least, the scope's rows scanned
    load = report["pinot_load"]
    assert load["queries"] >= len(buckets) and load["docs_scanned"] >= ORDERS, load


def test_trace_follows_an_order_to_kafka_and_pinot(world: World) -> None:
    [(order_id,)] = world.pg(
        "SELECT id::text FROM order_service.orders WHERE city = ANY(%s) AND status = 'cancelled' LIMIT 1", world.cities
    )
    result = world.nibble("trace", order_id, "--format", "json", cities=[])
    assert result.returncode == 0, result.stderr
    traced = json.loads(result.stdout)
    assert traced["order"]["status"] == "cancelled"
    events = traced["events"]
    kinds = [(e["table"], e["event_type"]) for e in events]
    assert ("order_events", "OrderPlaced") in kinds and ("order_events", "OrderCancelled") in kinds
    assert ("order_ledger", "OrderLedgerEntry") in kinds
    assert all(e["state"] == "published" and e["offset"] is not None and e["partition"] is not None for e in events)
    assert sum(e["current"] for e in events if e["table"] == "order_events") == 1  # the orders row holds one of them
    # the ledger's cancellation: the live state leaves and the cancelled one arrives in one transaction
    cancelled = next(e for e in events if e["event_type"] == "OrderCancelled")
    same_tx = [e for e in events if e["table"] == "order_ledger" and e["txid"] == cancelled["txid"]]
    assert sorted(e["facts"]["orders"] for e in same_tx) == [-1, 1]
    missing = world.nibble("trace", str(uuid.uuid4()), cities=[])
    assert missing.returncode != 0 and "has no order" in missing.stderr


def test_watch_serves_the_gauges_the_alerts_read(world: World) -> None:
    port = "19474"
    environ = {**os.environ, **world.services.environ(), "NIBBLE_DATABASE_URL": world.db}
    args = ["verify", "--watch", "2", "--rounds", "3", "--settle-timeout", str(SETTLE_S)]
    args += [a for c in world.cities for a in ("--city", c)]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env={**environ, "NIBBLE_VERIFY_METRICS_PORT": port},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        samples: dict[str, float] = {}

        def scraped() -> bool:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                return False
            for line in body.splitlines():
                if line.startswith("nibble_"):
                    name, value = line.rsplit(" ", 1)
                    samples[name] = float(value)
            return samples.get("nibble_verify_last_success_timestamp_seconds", 0) > 0

        wait_until(scraped, SETTLE_S, what="the watch to serve a verification's gauges")
        assert samples['nibble_verify_drift_aggregates{kind="stale",stream="orders"}'] == 0
        assert samples['nibble_outbox_lanes{outbox="order_service"}'] == 8
        assert samples['nibble_outbox_lanes_held{outbox="order_service"}'] == 8  # the module's relay holds all
        # Caught up by the verification it just made: a lag near the epoch's age or below zero is a bug.
        assert 0 <= samples['nibble_pinot_ingestion_lag_seconds{table="orders"}'] < SETTLE_S
        assert (
            samples["nibble_verify_window_end_timestamp_seconds"]
            > samples["nibble_verify_window_start_timestamp_seconds"]
        )
        assert watcher.wait(3 * SETTLE_S) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.stderr is not None and '"verified' in watcher.stderr.read()


# --- drift, injected ---------------------------------------------------------------------------------------


def _produce(services: Services, rows: list[OutboxRow]) -> None:
    """Bypass the relay: publish these events as the relay would, in this order."""
    codec = Codec()
    producer = Producer(producer_config(services.kafka_bootstrap, 30_000, 1_000_000))
    for row in rows:
        message = codec.encode(row)
        producer.produce(message.topic, message.value, message.key, headers=message.headers)
    assert producer.flush(30) == 0


def _next_position(world: World) -> int:
    """A position drawn from the order outbox's sequence (used by no row): above every event written so far."""
    [(position,)] = world.pg("SELECT nextval(pg_get_serial_sequence('order_service.outbox', 'position'))")
    return position


def _one(world: World, city: str, status: str, skip: set[str]) -> str:
    rows = world.pg(
        "SELECT id::text FROM order_service.orders WHERE city = %s AND status = %s ORDER BY id", city, status
    )
    return next(order_id for (order_id,) in rows if order_id not in skip)


def test_each_kind_of_drift_is_named_exactly_and_repair_heals_what_an_event_can(world: World) -> None:
    c0, c1, c2, c3 = world.cities[:4]
    taken: set[str] = set()
    lost = _one(world, c0, "delivered", taken)
    unseen = _one(world, c1, "delivered", taken)
    overtaken = _one(world, c2, "delivered", taken)
    taken |= {lost, unseen, overtaken}
    new_driver = str(uuid.uuid4())

    world.relay.terminate()
    # 1. An event lost before publication: its outbox row deleted.
    world.pg("UPDATE order_service.orders SET status = 'picked_up' WHERE id = %s", lost)
    assert world.pg("DELETE FROM order_service.outbox WHERE aggregate_id = %s RETURNING 1", lost) == [(1,)]
    # 2. Events Pinot never saw: published by a relay pointed at other topics (a change, and a new driver).
    world.pg("UPDATE order_service.orders SET status = 'picked_up' WHERE id = %s", unseen)
    with psycopg.connect(world.db, autocommit=True) as conn:
        hold_keys(conn).execute(
            "INSERT INTO driver_service.drivers (id, user_id, full_name, city, vehicle_type, status) "
            "VALUES (%s, gen_random_uuid(), 'New driver', %s, 'car', 'available')",
            (new_driver, c0),
        )
    astray = RelayProcess(world.services, world.db, prefix=f"t{uuid.uuid4().hex[:10]}.")
    wait_until(lambda: backlog(world.db) == 0, SETTLE_S, what="the misdirected relay to publish")
    astray.terminate()
    # 3. A stale state: two changes published in order, then the older one sent again bypassing the relay, with
    # a position above the newer one's (as a replay that re-numbers would), so Pinot's upsert takes it.
    world.pg("UPDATE order_service.orders SET status = 'picked_up' WHERE id = %s", overtaken)
    [older] = [OutboxRow(*row) for row in world.pg(OUTBOX_ROW, overtaken)]
    world.pg("UPDATE order_service.orders SET status = 'delivered' WHERE id = %s", overtaken)
    world.restart_relay()
    wait_until(lambda: backlog(world.db) == 0, SETTLE_S, what="the relay to publish")
    older.position = _next_position(world)
    _produce(world.services, [older])

    # City 3: what no event can take back.
    # 4. An extra row: an order PostgreSQL never wrote.
    template = _one(world, c3, "delivered", taken)
    [(payload,)] = world.pg(
        "SELECT order_service.order_payload(o)::text FROM order_service.orders o WHERE id = %s", template
    )
    stranger = str(uuid.uuid4())
    now = datetime.now(UTC)
    extra = OutboxRow(
        _next_position(world),
        str(uuid.uuid4()),
        "order",
        stranger,
        "OrderPlaced",
        payload.replace(template, stranger),
        older.schema_version,  # the version the order trigger writes now
        1,
        now,
    )
    # 5. Duplicated events: a ledger entry sent again under a new event id (the order counted twice), and an
    # order event sent again under a new event id at its own position (history holds it twice).
    counted_twice = _one(world, c3, "delivered", taken | {template})
    [(entry,)] = world.pg(
        "SELECT order_service.ledger_entry(o, 1)::text FROM order_service.orders o WHERE id = %s", counted_twice
    )
    ledger = OutboxRow(
        _next_position(world), str(uuid.uuid4()), "order_ledger", counted_twice, "OrderLedgerEntry", entry, 1, 1, now
    )
    echoed = _one(world, c3, "delivered", taken | {template, counted_twice})
    cursor = broker_connection(world.services.pinot_broker_url).cursor()
    cursor.execute("SELECT outbox_position, event_type FROM orders WHERE order_id = %(id)s", {"id": echoed})
    [(position, event_type)] = cursor.fetchall()
    [(state,)] = world.pg(
        "SELECT order_service.order_payload(o)::text FROM order_service.orders o WHERE id = %s", echoed
    )
    echo = OutboxRow(int(position), str(uuid.uuid4()), "order", echoed, event_type, state, older.schema_version, 1, now)
    _produce(world.services, [extra, ledger, echo])

    result = world.nibble("verify", "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert named(verified(result)) == {
        ("orders", "stale", lost),
        ("orders", "stale", unseen),
        ("drivers", "missing", new_driver),
        ("orders", "stale", overtaken),
        ("orders", "extra", stranger),
        ("order_ledger", "duplicated", counted_twice),
        ("order_events", "duplicated", echoed),
    }

    healed = world.nibble("verify", "--repair", cities=[c0, c1, c2])
    assert "repair: snapshot events written (orders: 3, drivers: 1)" in healed.stdout, healed.stdout + healed.stderr
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert healed.stdout.rstrip().endswith("equal: Pinot holds what PostgreSQL holds")
    again = world.nibble("verify", cities=[c0, c1, c2])
    assert again.returncode == 0, again.stdout + again.stderr

    left = world.nibble("verify", cities=[c3])
    assert left.returncode == 1
    for aggregate in (stranger, counted_twice, echoed):
        assert aggregate in left.stdout
    assert "extra: Pinot holds rows PostgreSQL never wrote" in left.stdout
    assert "duplicated: Pinot counts an event twice" in left.stdout


# --- no false alarm ----------------------------------------------------------------------------------------


class Placer(threading.Thread):
    """New orders every few hundred milliseconds, each advanced through its lifecycle as time passes."""

    def __init__(self, world: World) -> None:
        super().__init__(daemon=True)
        self.generator = Generator(world.db, seed=99, city_suffix="-" + world.cities[0].rsplit("-", 1)[1])
        self.generator.world = world.generator.world
        self.db = world.db
        self.stopping = threading.Event()
        self.placed = 0

    def run(self) -> None:
        with psycopg.connect(self.db, autocommit=True) as conn:
            while not self.stopping.is_set():
                now = datetime.now(UTC)
                self.generator.place(conn, 2, now)
                self.generator.advance(conn, now + timedelta(minutes=20))
                self.placed += 2
                time.sleep(0.3)


def test_no_drift_reported_under_a_live_writer_and_relay(world: World) -> None:
    cities = world.cities[:3]  # city 3 keeps its injected extra and duplicates
    if not world.relay.running:
        world.restart_relay()
    orders = [row[0] for row in world.pg("SELECT id FROM order_service.orders WHERE city = ANY(%s)", cities)]
    deliveries = [row[0] for row in world.pg("SELECT id FROM driver_service.deliveries WHERE city = ANY(%s)", cities)]
    writer = Writer(world.db, orders, deliveries, rate=40)
    placer = Placer(world)
    writer.start()
    placer.start()
    try:
        verifier = world.verifier()
        reports = []
        for _ in range(3):
            report = verifier.verify(world.scope(*cities))
            reports.append(report)
            assert report.equal, report.drifts
        assert placer.placed > 0 and len(writer.latencies_ms) > 0
    finally:
        writer.stopping.set()
        placer.stopping.set()
        writer.join(10)
        placer.join(10)
    assert writer.error is None and placer.is_alive() is False
    # the writer's changes were really in flight during the verifications, and were compared
    assert sum(result.buckets for result in reports[-1].results) > 0
