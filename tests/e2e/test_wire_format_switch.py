"""The switch of existing topics to Confluent's wire format (docs/operations.md): the topics hold unframed
messages, as relays from before the switch published them, then framed ones from the relay of now, and Pinot,
whose tables were applied first (the decoder reads both), ingests every event once: nothing lost, nothing
doubled. The tables and topics are the real ones; this module's data lives in cities of its own, and the
comparison (tests/support/exactness.py) is restricted to them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.pinot import broker_connection
from pipeline.analytics.tables import apply
from pipeline.contract.codec import Codec
from pipeline.contract.rows import OutboxRow
from pipeline.devstack.generator import CITIES, Generator
from tests.support.database import scratch_database
from tests.support.exactness import OUTBOXES, Ingested, assert_pinot_equals_postgres, backlog, record_committed_events
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services

ORDERS = 60
OUTBOX_ROWS = (
    "SELECT position, event_id::text, aggregate_type, aggregate_id::text, event_type, payload::text, "
    "schema_version, txid::text::bigint, occurred_at FROM {}.outbox WHERE schema_version = 1 "
    "ORDER BY position LIMIT %s"
)


def publish_unframed(services: Services, db: str) -> dict[str, int]:
    """Half of each outbox published as a relay from before the switch did (the Avro binary alone, with the
    same headers) and deleted from the outbox, as it would after Kafka's acknowledgement; how many per topic.
    Only v1 events: the switch came before any stream's v2 (restaurants', migration 0024; orders' and tickets',
    0027), and the decoder reads an unframed message as its stream's v1."""
    codec = Codec()  # no registry: unframed values
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap, "enable.idempotence": True})
    published: dict[str, int] = {}
    with psycopg.connect(db) as conn:
        for outbox in OUTBOXES:
            (total,) = conn.execute(f"SELECT count(*) FROM {outbox}.outbox").fetchone()
            rows = [OutboxRow(*row) for row in conn.execute(OUTBOX_ROWS.format(outbox), (total // 2,))]
            for message in map(codec.encode, rows):
                assert message.value[0] != 0
                producer.produce(message.topic, message.value, message.key, headers=message.headers)
                published[message.topic] = published.get(message.topic, 0) + 1
            assert producer.flush(30) == 0
            conn.execute(f"DELETE FROM {outbox}.outbox WHERE position = ANY(%s)", ([row.position for row in rows],))
            conn.commit()
    return published


def first_bytes(services: Services, topic: str, start: dict[int, int]) -> list[int]:
    """The first byte of every message appended to `topic` since the offsets `start`."""
    consumer = Consumer({"bootstrap.servers": services.kafka_bootstrap, "group.id": f"t{uuid.uuid4().hex}"})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in start}
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in start.items()])
        found: list[int] = []
        while sum(ends.values()) - sum(start.values()) > len(found):
            message = consumer.poll(10)
            assert message is not None and message.error() is None
            found.append(message.value()[0])
        return found
    finally:
        consumer.close()


def end_offsets(services: Services, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": services.kafka_bootstrap, "group.id": f"t{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def test_unframed_then_framed_messages_ingest_once(services: Services) -> None:
    with scratch_database(services.database_url, "switch", migrated=True) as db:
        record_committed_events(db)
        apply(services.settings())  # first: every table's decoder reads both framings
        suffix = f"-{uuid.uuid4().hex[:6]}"
        cities = [city + suffix for city in CITIES]
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        Generator(db, seed=11, city_suffix=suffix).run_batch(ORDERS, start, per_minute=10)
        # Deliveries and the ledger are still at v1 (orders are at v2): theirs are the unframed messages.
        before = end_offsets(services, "nibble.deliveries")
        unframed = publish_unframed(services, db)
        assert unframed["nibble.deliveries"] > 0 and unframed["nibble.order_ledger"] > 0
        relay = RelayProcess(services, db)  # then: the relay of now, in the wire format
        try:
            wait_until(lambda: backlog(db) == 0, 120, what="the relay to drain the rest of every outbox")
        finally:
            relay.terminate()
        # The deliveries topic holds this test's unframed messages, then its framed ones (others' too: it is shared).
        framing = first_bytes(services, "nibble.deliveries", before)
        assert framing.count(0x48) >= unframed["nibble.deliveries"] and 0 in framing

        cursor = broker_connection(services.pinot_broker_url).cursor()
        assert_pinot_equals_postgres(Ingested(db, cities, start, datetime.now(UTC), cursor), 180)
