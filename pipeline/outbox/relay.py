"""`nibble relay`: publish every outbox event to Kafka as Avro, at least once, in order per aggregate.

One synchronous loop. Per outbox it holds a lease (a session advisory lock on its PostgreSQL connection)
so that exactly one relay publishes it; standbys retry the lease every poll interval and take over within
seconds of the leader's connection dying. Per batch: read rows in position order, encode them all, produce
them all, wait for every acknowledgement, then delete the acknowledged rows (and dead-letter the poison
ones) in one transaction. A crash anywhere re-publishes at most the unacknowledged batch, with the same
event ids.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from types import FrameType

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer

from connectors import kafka, postgres
from pipeline import json_logging, metrics
from pipeline.avro_codec import Codec, Message, OutboxRow, PoisonEvent, parse_payload
from pipeline.config import Settings

log = logging.getLogger("nibble.relay")

LEASE_CLASS = 0x6E62  # first key of every relay lease: pg_try_advisory_lock(LEASE_CLASS, hashtext(schema))
BACKLOG_REFRESH_S = 5.0
MAX_BACKOFF_S = 30.0
STOP_GRACE_S = 5.0  # after SIGTERM, how long a batch in flight may still wait for Kafka before it is abandoned


class DeliveryFailed(Exception):
    """Kafka did not acknowledge part of a batch; those rows stay in the outbox for the next try."""


@dataclass
class BatchResult:
    claimed: int = 0
    published: int = 0
    dead_lettered: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # position -> Kafka's error


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec(settings.topic_prefix)
        self.health = metrics.Health()
        self.stopping = False
        self.conn: psycopg.Connection | None = None
        self.leases: list[str] = []
        self.producer: Producer | None = None
        self.producer_fatal = False
        self.kafka_ready = False
        self.stop_requested_at = 0.0
        self.next_backlog_refresh = 0.0

    # --- lifecycle -----------------------------------------------------------------------------------

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        if not self.stopping:
            self.stop_requested_at = time.monotonic()
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if self.settings.relay_metrics_port:
            metrics.serve(self.settings.relay_metrics_port, self.health)
        backoff = 0.0
        log.info("relay started", extra={"outboxes": self.settings.outbox_schemas, "topics": self.codec.topics})
        while not self.stopping:
            try:
                self._ensure_kafka()
                self._ensure_connected()
                self._acquire_leases()
                busy = False
                for schema in self.leases:
                    busy |= self._relay_batch(schema) >= self.settings.relay_batch_size
                self._refresh_backlog()
                self.health.beat(self.leases)
                backoff = 0.0
                if not busy:
                    self._wait_for_notify(self.settings.relay_poll_interval_s)
            except psycopg.OperationalError as exc:
                metrics.ERRORS.labels("postgres").inc()
                log.warning("PostgreSQL unavailable; reconnecting", extra={"error": str(exc).strip()})
                self._disconnect()
                backoff = self._sleep_backoff(backoff)
            except (DeliveryFailed, KafkaException) as exc:
                metrics.ERRORS.labels("kafka").inc()
                log.warning("Kafka unavailable; backlog kept in PostgreSQL", extra={"error": str(exc)})
                backoff = self._sleep_backoff(backoff)
        if self.producer is not None:
            # Empty unless a batch was abandoned at stop; its rows stay in the outbox for the next relay.
            self.producer.purge()
            self.producer.flush(1)
        self._disconnect()
        log.info("relay stopped")

    def _sleep_backoff(self, previous: float) -> float:
        delay = min(MAX_BACKOFF_S, max(0.5, previous * 2))
        deadline = time.monotonic() + delay
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        return delay

    def _ensure_kafka(self) -> None:
        """Create the topics and connect the producer once; until Kafka answers, the loop backs off."""
        if self.kafka_ready:
            return
        kafka.ensure_topics(self.settings, self.codec.topics)
        # Connect and fetch topic metadata now, not on the first event: the first batch after a quiet
        # start would otherwise wait for the broker connection and the idempotent producer id.
        self._producer().list_topics(timeout=10)
        self.kafka_ready = True
        log.info("connected to Kafka")

    # --- PostgreSQL: connection, lease, notifications ------------------------------------------------

    def _ensure_connected(self) -> None:
        if self.conn is not None and not self.conn.closed:
            return
        self.conn = postgres.connect(self.settings.postgres_url, "nibble-relay")
        self.conn.execute("LISTEN nibble_outbox")
        log.info("connected to PostgreSQL")

    def _disconnect(self) -> None:
        if self.leases:
            log.warning("leases released", extra={"outboxes": self.leases})
        for schema in self.leases:
            metrics.LEADER.labels(schema).set(0)
        self.leases = []
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _acquire_leases(self) -> None:
        assert self.conn is not None
        for schema in self.settings.outbox_schemas:
            if schema in self.leases:
                continue
            (won,) = self.conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LEASE_CLASS, schema)
            ).fetchone()
            metrics.LEADER.labels(schema).set(1 if won else 0)
            if won:
                self.leases.append(schema)
                log.info("lease acquired: this relay now publishes the outbox", extra={"outbox": schema})

    def _wait_for_notify(self, timeout: float) -> None:
        assert self.conn is not None
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            pass

    def _refresh_backlog(self) -> None:
        now = time.monotonic()
        if now < self.next_backlog_refresh:
            return
        self.next_backlog_refresh = now + BACKLOG_REFRESH_S
        assert self.conn is not None
        for schema in self.leases:
            rows, oldest_age, dead = self.conn.execute(postgres.schema_sql("outbox_backlog", schema)).fetchone()
            metrics.BACKLOG_ROWS.labels(schema).set(rows)
            metrics.OLDEST_AGE.labels(schema).set(float(oldest_age))
            metrics.DEAD_LETTER_ROWS.labels(schema).set(dead)

    # --- one batch -----------------------------------------------------------------------------------

    def _relay_batch(self, schema: str) -> int:
        assert self.conn is not None
        started = time.perf_counter()
        records = self.conn.execute(
            postgres.schema_sql("claim_batch", schema), {"limit": self.settings.relay_batch_size}
        ).fetchall()
        if not records:
            return 0
        to_send, poison = self._encode(records)
        failed = self._publish(to_send)
        # Keep per-aggregate order: once an aggregate has an unacknowledged event in this batch, its later
        # events stay in the outbox too, to be re-sent after it.
        blocked: set[str] = set()
        acknowledged: list[int] = []
        per_topic: Counter[str] = Counter()
        for row, message in to_send:
            if row.position in failed or row.aggregate_id in blocked:
                blocked.add(row.aggregate_id)
                continue
            acknowledged.append(row.position)
            per_topic[message.topic] += 1
        with self.conn.transaction():
            if acknowledged:
                self.conn.execute(postgres.schema_sql("delete_published", schema), {"positions": acknowledged})
            for row, error in poison:
                self.conn.execute(
                    postgres.schema_sql("dead_letter", schema), {"position": row.position, "error": error}
                )
        for topic, count in per_topic.items():
            metrics.PUBLISHED.labels(topic).inc(count)
        for row, error in poison:
            metrics.DEAD_LETTERED.labels(schema).inc()
            log.error(
                "poison event dead-lettered; its aggregate is parked",
                extra={
                    "outbox": schema,
                    "position": row.position,
                    "event_id": row.event_id,
                    "aggregate_id": row.aggregate_id,
                    "error": error,
                },
            )
        metrics.BATCH_SECONDS.labels(schema).observe(time.perf_counter() - started)
        if failed:
            raise DeliveryFailed(f"{len(failed)} of {len(to_send)} events: {next(iter(failed.values()))}")
        return len(records)

    def _encode(self, records: list[tuple]) -> tuple[list[tuple[OutboxRow, Message]], list[tuple[OutboxRow, str]]]:
        """Messages to send, and poison rows with their error. After a poison event, its aggregate's later
        events in the batch are neither sent nor dead-lettered: they wait, parked, behind it."""
        to_send: list[tuple[OutboxRow, Message]] = []
        poison: list[tuple[OutboxRow, str]] = []
        parked: set[str] = set()
        limit = self.settings.relay_max_message_bytes
        for position, event_id, aggregate_type, aggregate_id, event_type, payload, version, txid, at in records:
            if aggregate_id in parked:
                continue
            # An unparseable payload is dead-lettered by position: the empty dict is never encoded.
            row = OutboxRow(position, event_id, aggregate_type, aggregate_id, event_type, {}, version, txid, at)
            try:
                row = replace(row, payload=parse_payload(payload))
                message = self.codec.encode(row)
                if message.size > limit:
                    raise PoisonEvent(f"message of {message.size} bytes exceeds NIBBLE_RELAY_MAX_MESSAGE_BYTES={limit}")
            except PoisonEvent as exc:
                poison.append((row, str(exc)))
                parked.add(row.aggregate_id)
                continue
            to_send.append((row, message))
        return to_send, poison

    def _publish(self, to_send: list[tuple[OutboxRow, Message]]) -> dict[int, str]:
        """Produce every message and wait for every acknowledgement; returns position -> error of failures."""
        producer = self._producer()
        failed: dict[int, str] = {}

        def on_delivery(position: int) -> object:
            def record(err: KafkaError | None, _msg: object) -> None:
                if err is not None:
                    failed[position] = err.str()

            return record

        for row, message in to_send:
            while True:
                try:
                    producer.produce(
                        message.topic,
                        value=message.value,
                        key=message.key,
                        headers=message.headers,
                        on_delivery=on_delivery(row.position),
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain it
                    producer.poll(0.05)
        remaining = self._await_acknowledgements(producer)
        if remaining:
            failed.update({row.position: "no delivery report" for row, _ in to_send if row.position not in failed})
        if self.producer_fatal:
            self.producer = None  # a fatal idempotence error: the next batch starts a fresh producer
        return failed

    def _await_acknowledgements(self, producer: Producer) -> int:
        """Serve delivery reports until every message is acknowledged or failed (message.timeout.ms bounds
        that), or until STOP_GRACE_S after a stop request; returns how many are still unacknowledged."""
        deadline = time.monotonic() + self.settings.relay_delivery_timeout_ms / 1000 + 10
        while (remaining := producer.flush(0.2)) and time.monotonic() < deadline:
            if self.stopping and time.monotonic() > self.stop_requested_at + STOP_GRACE_S:
                log.warning("stopping: batch abandoned, its unacknowledged rows stay in the outbox")
                break
        return remaining

    def _producer(self) -> Producer:
        if self.producer is None:
            self.producer_fatal = False

            def on_error(err: KafkaError) -> None:
                if err.fatal():
                    self.producer_fatal = True
                    log.error("Kafka producer fatal error", extra={"error": err.str()})

            self.producer = Producer({**kafka.producer_config(self.settings), "error_cb": on_error})
        return self.producer


# --- status -----------------------------------------------------------------------------------------


def status(settings: Settings) -> list[dict[str, object]]:
    rows = []
    with postgres.connect(settings.postgres_url, "nibble-relay-status") as conn:
        for schema in settings.outbox_schemas:
            backlog, oldest_age, dead = conn.execute(postgres.schema_sql("outbox_backlog", schema)).fetchone()
            leader = conn.execute(
                postgres.schema_sql("leader", schema), {"lease_class": LEASE_CLASS, "schema": schema}
            ).fetchone()
            rows.append(
                {
                    "outbox": schema,
                    "backlog_rows": backlog,
                    "oldest_age_s": round(float(oldest_age), 3),
                    "dead_letter_rows": dead,
                    "leader_pid": leader[0] if leader else None,
                    "leader_since": leader[2].isoformat() if leader and leader[2] else None,
                }
            )
    return rows


# --- CLI --------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("relay", help="publish outbox events to Kafka (a long-running daemon)")
    parser.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "status":
        rows = status(settings)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'outbox':<20}{'backlog':>9}{'oldest (s)':>12}{'dead':>6}  leader")
            for row in rows:
                leader = f"pid {row['leader_pid']}" if row["leader_pid"] else "none"
                print(
                    f"{row['outbox']:<20}{row['backlog_rows']:>9}{row['oldest_age_s']:>12}"
                    f"{row['dead_letter_rows']:>6}  {leader}"
                )
        return 0
    json_logging.configure()
    try:
        Relay(settings).run()
    except Exception:
        log.exception("relay failed")
        return 1
    return 0
