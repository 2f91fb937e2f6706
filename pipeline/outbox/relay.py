"""The relay daemon: publish every outbox event to Kafka as Avro, at least once, in order per aggregate.

One synchronous loop. Each outbox is split into lanes by aggregate (lanes.py); a relay publishes the lanes
whose leases (session advisory locks on its PostgreSQL connection) it holds. Every REBALANCE_S it re-reads
who is alive and who holds what, releases lanes above its fair share and takes free ones, so relays that
join get a share and the lanes of a relay whose connection died are taken within seconds. Per batch: claim
the held lanes' rows in position order, encode them all, produce them all, wait for every acknowledgement,
then delete the acknowledged rows (and dead-letter the poison ones) in one transaction; batch.py holds the
ordering rules. A crash anywhere re-publishes at most the unacknowledged batch, with the same event ids.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as KafkaMessage

from connectors import kafka, postgres
from connectors.registry import Registry
from pipeline.config import Settings
from pipeline.contract.codec import Codec, Message
from pipeline.contract.rows import OutboxRow
from pipeline.contract.subjects import SchemaIdUnavailable, registered_ids
from pipeline.contract.topics import ensure_stream_topics
from pipeline.errors import redact
from pipeline.outbox import batch, lanes, metrics
from pipeline.outbox.store import OutboxStore

log = logging.getLogger("nibble.relay")

APPLICATION_NAME = "nibble-relay"  # how relays count each other in pg_stat_activity
BACKLOG_REFRESH_S = 5.0
REBALANCE_S = 1.0
MAX_BACKOFF_S = 30.0
REGISTRY_TIMEOUT_S = 5.0
STOP_GRACE_S = 5.0  # after SIGTERM, how long a batch in flight may still wait for Kafka before it is abandoned


class DeliveryFailed(Exception):
    """Kafka did not acknowledge part of a batch; those rows stay in the outbox for the next try."""


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Each schema version's registry id is looked up when the relay first meets it, then cached.
        registry = Registry(settings.endpoints.schema_registry_url, timeout_s=REGISTRY_TIMEOUT_S)
        self.codec = Codec(settings.endpoints.topic_prefix, schema_id=registered_ids(registry))
        self.stores = {schema: OutboxStore(schema) for schema in settings.relay.outbox_schemas}
        self.health = metrics.Health()
        self.stopping = False
        self.conn: psycopg.Connection | None = None
        self.backend_pid = 0  # this relay's identity among the relays: its session's pid
        self.joined: set[str] = set()  # outboxes whose fence this relay holds shared
        self.lane_counts: dict[str, int] = {}
        self.lanes: dict[str, list[int]] = {schema: [] for schema in self.stores}
        self.producer: Producer | None = None
        self.producer_fatal = False
        self.kafka_ready = False
        self.stop_requested_at = 0.0
        self.next_backlog_refresh = 0.0
        self.next_rebalance = 0.0

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
            metrics.serve(self.settings.relay.metrics_host, self.settings.relay.metrics_port, self.health)
        backoff = 0.0
        log.info("relay started", extra={"outboxes": self.settings.relay.outbox_schemas, "topics": self.codec.topics})
        while not self.stopping:
            try:
                self._ensure_kafka()
                self._ensure_connected()
                self._rebalance()
                self.health.beat(self.publishing)  # the lanes just taken, before a first long batch
                busy = False
                for schema, held in self.lanes.items():
                    if held:
                        busy |= self._relay_batch(self.stores[schema], held) >= self.settings.relay.batch_size
                self._refresh_backlog()
                self.health.beat(self.publishing)
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
                self._refresh_backlog_without_kafka()
                backoff = self._sleep_backoff(backoff)
            except SchemaIdUnavailable as exc:
                # Raised while a batch is encoded, before any of it is sent: its rows stay in the outbox.
                metrics.ERRORS.labels("registry").inc()
                log.warning("schema id unavailable; backlog kept in PostgreSQL", extra={"error": str(exc)})
                self._refresh_backlog_without_kafka()
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
        ensure_stream_topics(endpoints, self.codec)
        # Connect and fetch topic metadata now, not on the first event: the first batch after a quiet
        # start would otherwise wait for the broker connection and the idempotent producer id.
        self._producer().list_topics(timeout=10)
        self.kafka_ready = True
        log.info("connected to Kafka")

    # --- PostgreSQL: connection, lane leases, notifications ------------------------------------------

    def _ensure_connected(self) -> None:
        if self.conn is not None and not self.conn.closed:
            return
        self.conn = postgres.connect(self.settings.endpoints.database_url, APPLICATION_NAME)
        self.conn.execute("LISTEN nibble_outbox")
        self.backend_pid = self.conn.info.backend_pid
        log.info("connected to PostgreSQL", extra={"database": redact(self.settings.endpoints.database_url)})

    @property
    def publishing(self) -> list[str]:
        return [schema for schema, held in self.lanes.items() if held]

    def _disconnect(self) -> None:
        if self.publishing:
            log.warning("lanes released with the connection", extra={"lanes": self.lanes})
        for schema in self.stores:
            self._set_lanes(schema, [])
        self.joined.clear()
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _set_lanes(self, schema: str, held: list[int]) -> None:
        self.lanes[schema] = held
        metrics.PUBLISHING.labels(schema).set(1 if held else 0)
        metrics.LANES.labels(schema).set(len(held))

    def _rebalance(self) -> None:
        """Between batches (nothing of a lane is ever in flight when it is released): leave outboxes whose
        lane count is being switched, and move towards this relay's fair share of every other one."""
        now = time.monotonic()
        if now < self.next_rebalance:
            return
        self.next_rebalance = now + REBALANCE_S
        assert self.conn is not None
        for schema, store in self.stores.items():
            if schema not in self.joined:
                if not store.try_fence_share(self.conn):
                    continue  # a lane-count switch (or a relay from before lanes) holds the outbox
                self.joined.add(schema)
            state = store.lane_state(self.conn, APPLICATION_NAME)
            held = list(self.lanes[schema])
            if state.fence_requested:
                for lane in held:
                    store.release_lane(self.conn, lane)
                store.release_fence_share(self.conn)
                self.joined.discard(schema)
                self._set_lanes(schema, [])
                log.info("lane-count switch requested: outbox left", extra={"outbox": schema, "lanes": held})
                continue
            self.lane_counts[schema] = state.lane_count
            step = lanes.plan(self.backend_pid, state.relays, state.lane_count, state.holders)
            for lane in step.release:
                store.release_lane(self.conn, lane)
                held.remove(lane)
            held += [lane for lane in step.acquire if store.try_lane(self.conn, lane)]
            if held != self.lanes[schema]:
                log.info(
                    "lanes rebalanced",
                    extra={
                        "outbox": schema,
                        "lanes": sorted(held),
                        "lane_count": state.lane_count,
                        "relays": len(state.relays),
                    },
                )
            self._set_lanes(schema, sorted(held))

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
        for schema in self.publishing:
            backlog = self.stores[schema].backlog(self.conn)
            metrics.BACKLOG_ROWS.labels(schema).set(backlog.rows)
            metrics.OLDEST_AGE.labels(schema).set(backlog.oldest_age_s)
            metrics.DEAD_LETTER_ROWS.labels(schema).set(backlog.dead_letter_rows)

    def _refresh_backlog_without_kafka(self) -> None:
        """While Kafka is away the loop never reaches its refresh, yet the backlog's age is what an operator
        watches then: read it from PostgreSQL here too (a failure here is the next iteration's to handle)."""
        if self.conn is None:
            return
        try:
            self._refresh_backlog()
        except psycopg.Error:
            self._disconnect()

    # --- one batch -----------------------------------------------------------------------------------

    def _relay_batch(self, store: OutboxStore, held: list[int]) -> int:
        assert self.conn is not None
        started = time.perf_counter()
        rows = store.claim_batch(self.conn, self.settings.relay.batch_size, self.lane_counts[store.schema], held)
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
        undelivered: list[tuple[bytes, str]] = []  # value and error of each message Kafka refused

        def on_delivery(err: KafkaError | None, msg: KafkaMessage) -> None:  # called for failures only
            undelivered.append((msg.value(), err.str() if err is not None else "delivery report without error"))

        # One callback for the whole batch, not a closure per event: a failed message is found by its value,
        # unique per event (its Avro holds the event id and the position).
        for _row, message in to_send:
            while True:
                try:
                    producer.produce(
                        message.topic,
                        value=message.value,
                        key=message.key,
                        headers=message.headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain it
                    producer.poll(0.05)
        remaining = self._await_acknowledgements(producer)
        failed: dict[int, str] = {}
        if undelivered:
            position_of = {message.value: row.position for row, message in to_send}
            failed = {position_of[value]: error for value, error in undelivered}
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
            # Delivery reports for failed messages only: a Python callback per acknowledged message was ~5% of
            # the relay's CPU, and flush() still waits for every message, acknowledged or failed.
            self.producer = Producer({**config, "error_cb": on_error, "delivery.report.only.error": True})
        return self.producer
