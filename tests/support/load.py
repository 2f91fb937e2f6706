"""A pipeline under load for fault tests: a writer committing orders of a city of its own, a relay
publishing them, Pinot ingesting them; a burst (a backlog placed in one transaction, in a city of its own so
that its progress is told apart from the writer's); then the exactness check (Pinot equals PostgreSQL) and the
duplicate counts in Kafka.

The database records every committed event (tests/support/exactness.record_committed_events), so the
expected set of events is exact even though the relay deletes outbox rows, and even when a COMMIT's answer is
lost to a PostgreSQL restart (the writer cannot tell whether it happened; the record can).
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pinotdb.exceptions
import psycopg
from confluent_kafka import Consumer, TopicPartition

from connectors.pinot import broker_connection
from pipeline.config import login_url
from pipeline.contract.codec import Codec
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.workload import insert_orders

STEPS = ("confirmed", "preparing", "ready_for_pickup", "picked_up", "delivered")
STEP = "UPDATE order_service.orders SET status = %s WHERE id = ANY(%s::uuid[])"
# The streams the writer's transactions write: the order events and the order ledger's entries.
TOPICS = {"order": "nibble.orders", "order_ledger": "nibble.order_ledger"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Writer:
    """Commits a few orders and one lifecycle step of the earlier ones every tick, in one transaction."""

    database_url: str
    city: str
    orders_per_tick: int = 4
    tick_s: float = 0.2
    last_commit: tuple[float, str] | None = None  # (monotonic time, an order id) of the newest commit
    failed_ticks: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        rng = random.Random(13)
        pending: dict[str, int] = {}  # order id -> index in STEPS of its next status
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            ids = [str(uuid.uuid4()) for _ in range(self.orders_per_tick)]
            cancelled = {order_id for order_id in pending if rng.random() < 0.05}
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(login_url(self.database_url, "order_service"), connect_timeout=3)
                self._tick(conn, ids, pending, cancelled, tip=rng.choice([0, 1, 2.5]))
            except psycopg.Error:  # PostgreSQL away: this tick's changes are rolled back or never sent
                self.failed_ticks += 1
                conn = None
                time.sleep(0.5)
                continue
            pending = {o: step + 1 for o, step in pending.items() if o not in cancelled and step + 1 < len(STEPS)}
            pending.update(dict.fromkeys(ids, 0))
            self.last_commit = (time.monotonic(), ids[-1])
            self._stop.wait(self.tick_s)
        if conn is not None:
            conn.close()

    def place(self, conn: psycopg.Connection, ids: list[str], city: str) -> None:
        """Orders placed in one transaction of their own, outside the ticks (a backlog to drain)."""
        insert_orders(conn, ids, city, quantity=3)
        conn.commit()

    def _tick(
        self, conn: psycopg.Connection, ids: list[str], pending: dict[str, int], cancelled: set[str], tip: float
    ) -> None:
        """One transaction: new orders, each pending one a step further (one statement per step), some
        cancelled."""
        with conn.transaction():
            insert_orders(conn, ids, self.city, tip=tip)
            for index, status in enumerate(STEPS):
                moving = [o for o, step in pending.items() if step == index and o not in cancelled]
                if moving:
                    conn.execute(STEP, (status, moving))
            if cancelled:
                conn.execute(
                    "UPDATE order_service.orders SET status = 'cancelled', cancel_reason = 'customer' "
                    "WHERE id = ANY(%s::uuid[])",
                    (list(cancelled),),
                )


@dataclass
class Load:
    """A database of its own (`db`, its URL) and cities of its own on the shared tables and topics: the
    writer's, and the burst's."""

    services: Services
    db: str
    city: str
    writer: Writer
    relay: RelayProcess | None = None
    metrics_port: int = 0
    start_offsets: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> partition -> first offset

    @property
    def burst_city(self) -> str:
        return f"{self.city}-burst"

    @property
    def cities(self) -> list[str]:
        return [self.city, self.burst_city]

    def start_relay(self, **settings: str) -> None:
        self.metrics_port = free_port()
        self.relay = RelayProcess(self.services, self.db, relay_metrics_port=str(self.metrics_port), **settings)

    def stop_relay(self) -> None:
        if self.relay is not None and self.relay.running:
            self.relay.resume()  # a test that failed while the relay was paused
            self.relay.terminate()

    def _count(self, query: str, *params: Any) -> int:
        with psycopg.connect(self.db) as conn:
            return conn.execute(query, params).fetchone()[0]

    def committed_events(self) -> set[str]:
        """The ids of every order event and ledger entry committed (the writer's and the burst's)."""
        with psycopg.connect(self.db) as conn:
            return {
                event_id
                for (event_id,) in conn.execute(
                    "SELECT event_id::text FROM public.committed_events WHERE aggregate_type = ANY(%s)",
                    (list(TOPICS),),
                )
            }

    def backlog(self) -> int:
        """Order outbox rows waiting: the order events and the order ledger's entries."""
        return self._count("SELECT count(*) FROM order_service.outbox")

    def burst(self, orders: int) -> int:
        """A backlog for the relay to drain: `orders` placed in one transaction in the burst's city; returns the
        outbox rows it wrote (an order event and a ledger entry per order)."""
        with psycopg.connect(self.db) as conn:
            self.writer.place(conn, [str(uuid.uuid4()) for _ in range(orders)], self.burst_city)
        return self._count("SELECT count(*) FROM public.committed_events WHERE city = %s", self.burst_city)

    def burst_waiting(self) -> int:
        """The burst's rows still in the outbox: the relay deletes a row once Kafka acknowledged it."""
        return self._count("SELECT count(*) FROM order_service.outbox WHERE payload->>'city' = %s", self.burst_city)

    def burst_published(self) -> int:
        """The burst's order events Kafka acknowledged (gone from the outbox)."""
        return self._count(
            "SELECT (SELECT count(*) FROM public.committed_events WHERE aggregate_type = 'order' AND city = %s) "
            "- (SELECT count(*) FROM order_service.outbox WHERE aggregate_type = 'order' AND payload->>'city' = %s)",
            self.burst_city,
            self.burst_city,
        )

    def pinot(self, query: str, **params: Any) -> list[list[Any]]:
        cursor = broker_connection(self.services.pinot_broker_url).cursor()
        cursor.execute(query, params)
        return [list(row) for row in cursor.fetchall()]

    def pinot_has_order(self, order_id: str) -> bool:
        try:
            rows = self.pinot("SELECT COUNT(*) FROM order_events WHERE order_id = %(id)s", id=order_id)
        except (pinotdb.exceptions.Error, httpx.HTTPError):  # the broker may still be on its way back
            return False
        return rows[0][0] > 0

    def pinot_burst_events(self) -> int:
        """The burst's order events Pinot has ingested."""
        return self.pinot("SELECT COUNT(*) FROM order_events WHERE city = %(city)s", city=self.burst_city)[0][0]

    def kafka_event_ids(self) -> Counter[str]:
        """This load's event ids in its topics since the load began, with their count."""
        ours = self.committed_events()
        found = event_ids(self.services.kafka_bootstrap, self.start_offsets)
        return Counter({event_id: n for event_id, n in found.items() if event_id in ours})


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"fault-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def event_ids(bootstrap: str, start: dict[str, dict[int, int]], tail: int | None = None) -> Counter[str]:
    """How many times each event id (header) appears in the topics of `start`, from its offsets to the
    current end of each partition; with `tail`, in the last `tail` messages of each partition only."""
    return Counter(
        event_id
        for topic, offsets in start.items()
        for headers, _ in read_messages(bootstrap, offsets, topic, tail)
        if (event_id := headers.get("event_id")) is not None
    )


def read_orders(bootstrap: str, start: dict[int, int], events: set[str]) -> list[tuple[str, str, int]]:
    """(order id, event id, outbox position) of the order events among `events` since `start`, in partition
    order (an order's events share a partition)."""
    codec = Codec()
    orders = []
    for headers, value in read_messages(bootstrap, start, "nibble.orders"):
        if headers.get("event_id") not in events:
            continue
        record = codec.decode(value, "order", int(headers["schema_version"]))
        orders.append((str(record["order_id"]), headers["event_id"], record["outbox_position"]))
    return orders


def read_messages(
    bootstrap: str, start: dict[int, int], topic: str, tail: int | None = None
) -> list[tuple[dict[str, str], bytes]]:
    """Headers and value of every message from `start` offsets (with `tail`: at most the last `tail` of each
    partition) to the current end of each partition."""
    end = end_offsets(bootstrap, topic)
    first = {p: max(start.get(p, 0), end[p] - tail if tail else 0) for p in end}
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"fault-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, first[p]) for p in end])
    remaining = {p for p in end if end[p] > first[p]}
    messages: list[tuple[dict[str, str], bytes]] = []
    deadline = time.monotonic() + 120
    try:
        while remaining:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: partitions {sorted(remaining)} not read to their end in 120 s")
            message = consumer.poll(0.5)
            if message is None or message.error():  # end of a partition, or a transient error
                continue
            messages.append(({k: v.decode() for k, v in message.headers() or []}, message.value()))
            if message.offset() >= end[message.partition()] - 1:
                remaining.discard(message.partition())
    finally:
        consumer.close()
    return messages
