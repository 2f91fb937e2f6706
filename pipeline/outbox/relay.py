"""The relay daemon: publish every outbox event to Kafka as Avro, at least once, in order per aggregate.

One synchronous loop. Per outbox it holds a lease (a session advisory lock on its PostgreSQL connection)
so that exactly one relay publishes it; standbys retry the lease every poll interval and take over within
seconds of the leader's connection dying. Per batch: claim rows in position order, encode them all, produce
them all, wait for every acknowledgement, then delete the acknowledged rows (and dead-letter the poison
ones) in one transaction; batch.py holds the ordering rules. A crash anywhere re-publishes at most the
unacknowledged batch, with the same event ids.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer

from connectors import kafka, postgres
from pipeline.config import Settings
from pipeline.contract.codec import Codec, Message
from pipeline.errors import redact
from pipeline.outbox import batch, metrics
from pipeline.outbox.store import OutboxRow, OutboxStore

log = logging.getLogger("nibble.relay")

BACKLOG_REFRESH_S = 5.0
MAX_BACKOFF_S = 30.0
STOP_GRACE_S = 5.0  # after SIGTERM, how long a batch in flight may still wait for Kafka before it is abandoned


class DeliveryFailed(Exception):
    """Kafka did not acknowledge part of a batch; those rows stay in the outbox for the next try."""


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec(settings.endpoints.topic_prefix)
        self.stores = {schema: OutboxStore(schema) for schema in settings.relay.outbox_schemas}
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
        if self.settings.relay.metrics_port:
            metrics.serve(self.settings.relay.metrics_port, self.health)
        backoff = 0.0
        log.info("relay started", extra={"outboxes": self.settings.relay.outbox_schemas, "topics": self.codec.topics})
        while not self.stopping:
            try:
                self._ensure_kafka()
                self._ensure_connected()
                self._acquire_leases()
                busy = False
                for schema in self.leases:
                    busy |= self._relay_batch(self.stores[schema]) >= self.settings.relay.batch_size
                self._refresh_backlog()
                self.health.beat(self.leases)
                backoff = 0.0
                if not busy:
                    self._wait_for_notify(self.settings.relay.poll_interval_s)
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
        endpoints = self.settings.endpoints
        kafka.ensure_topics(
            endpoints.kafka_bootstrap_servers,
            self.codec.topics,
            endpoints.kafka_topic_partitions,
            endpoints.topic_config,
        )
        # Connect and fetch topic metadata now, not on the first event: the first batch after a quiet
        # start would otherwise wait for the broker connection and the idempotent producer id.
        self._producer().list_topics(timeout=10)
        self.kafka_ready = True
        log.info("connected to Kafka")

    # --- PostgreSQL: connection, lease, notifications ------------------------------------------------

    def _ensure_connected(self) -> None:
        if self.conn is not None and not self.conn.closed:
            return
        self.conn = postgres.connect(self.settings.endpoints.database_url, "nibble-relay")
        self.conn.execute("LISTEN nibble_outbox")
        log.info("connected to PostgreSQL", extra={"database": redact(self.settings.endpoints.database_url)})

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
        for schema, store in self.stores.items():
            if schema in self.leases:
                continue
            won = store.try_lease(self.conn)
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
            backlog = self.stores[schema].backlog(self.conn)
            metrics.BACKLOG_ROWS.labels(schema).set(backlog.rows)
            metrics.OLDEST_AGE.labels(schema).set(backlog.oldest_age_s)
            metrics.DEAD_LETTER_ROWS.labels(schema).set(backlog.dead_letter_rows)

    # --- one batch -----------------------------------------------------------------------------------

    def _relay_batch(self, store: OutboxStore) -> int:
        assert self.conn is not None
        started = time.perf_counter()
        rows = store.claim_batch(self.conn, self.settings.relay.batch_size)
        if not rows:
            return 0
        encoded = batch.encode_batch(rows, self.codec.encode, self.settings.relay.max_message_bytes)
        failed = self._publish(encoded.to_send)
        settled = batch.settle(encoded.to_send, failed)
        with self.conn.transaction():
            if settled.acknowledged:
                store.delete_published(self.conn, settled.acknowledged)
            for row, error in encoded.poison:
                store.dead_letter(self.conn, row.position, error)
        for topic, count in settled.published.items():
            metrics.PUBLISHED.labels(topic).inc(count)
        for row, error in encoded.poison:
            metrics.DEAD_LETTERED.labels(store.schema).inc()
            log.error(
                "poison event dead-lettered; its aggregate is parked",
                extra={
                    "outbox": store.schema,
                    "position": row.position,
                    "event_id": row.event_id,
                    "aggregate_id": row.aggregate_id,
                    "error": error,
                },
            )
        metrics.BATCH_SECONDS.labels(store.schema).observe(time.perf_counter() - started)
        if failed:
            raise DeliveryFailed(f"{len(failed)} of {len(encoded.to_send)} events: {next(iter(failed.values()))}")
        return len(rows)

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
        deadline = time.monotonic() + self.settings.relay.delivery_timeout_ms / 1000 + 10
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

            config = kafka.producer_config(
                self.settings.endpoints.kafka_bootstrap_servers,
                self.settings.relay.delivery_timeout_ms,
                self.settings.relay.max_message_bytes,
            )
            self.producer = Producer({**config, "error_cb": on_error})
        return self.producer


# --- status -----------------------------------------------------------------------------------------


def status(settings: Settings) -> list[dict[str, object]]:
    """Per outbox: backlog, age of the oldest unpublished event, dead letters and the lease holder."""
    rows = []
    with postgres.connect(settings.endpoints.database_url, "nibble-relay-status") as conn:
        for schema in settings.relay.outbox_schemas:
            store = OutboxStore(schema)
            backlog = store.backlog(conn)
            leader = store.leader(conn)
            rows.append(
                {
                    "outbox": schema,
                    "backlog_rows": backlog.rows,
                    "oldest_age_s": round(backlog.oldest_age_s, 3),
                    "dead_letter_rows": backlog.dead_letter_rows,
                    "leader_pid": leader[0] if leader else None,
                    "leader_since": leader[1].isoformat() if leader and leader[1] else None,
                }
            )
    return rows
