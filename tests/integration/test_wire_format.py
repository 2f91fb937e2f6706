"""The relay's wire format against the real registry and Kafka: a stock confluent-kafka `AvroDeserializer` with a
`SchemaRegistryClient` reads every topic's messages, and a registry killed with `kill -9` mid-drain delays the
publication of the versions the relay has not met yet, loses nothing, and lets the rest flow."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from pipeline.config import load_settings
from pipeline.contract.codec import Codec
from pipeline.devstack.generator import Generator
from pipeline.devstack.stack import LocalStack
from tests.support.polling import wait_until
from tests.support.services import Services
from tests.support.workload import full_lifecycle

REGISTRY_URL = load_settings().endpoints.schema_registry_url


def outbox_rows(db: str, outbox: str) -> int:
    with psycopg.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {outbox}.outbox").fetchone()[0]


def event_ids(db: str, outbox: str, aggregate_type: str) -> set[str]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(f"SELECT event_id::text FROM {outbox}.outbox WHERE aggregate_type = %s", (aggregate_type,))
        return {event_id for (event_id,) in rows}


def read_with_stock_deserializer(services: Services, topic: str, expect: int) -> list[dict]:
    """Every message of `topic`, read from the start by confluent-kafka's own AvroDeserializer."""
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": services.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "value.deserializer": AvroDeserializer(
                SchemaRegistryClient({"url": REGISTRY_URL, "timeout": 10}), conf={"subject.name.strategy.type": "TOPIC"}
            ),
        }
    )
    consumer.subscribe([topic])
    events: list[dict] = []
    try:
        wait_until(lambda: _poll_into(consumer, events) >= expect, 60, what=f"{expect} events on {topic}")
    finally:
        consumer.close()
    return events


def _poll_into(consumer: DeserializingConsumer, events: list[dict]) -> int:
    message = consumer.poll(1.0)
    if message is not None:
        assert message.error() is None, message.error()
        events.append(message.value())
    return len(events)


def test_a_stock_avro_deserializer_reads_every_topic(services, db, prefix, start_relay) -> None:
    suffix = f"-{uuid.uuid4().hex[:6]}"
    Generator(db, seed=5, city_suffix=suffix).run_batch(20, datetime.now(UTC) - timedelta(hours=1), per_minute=10)
    codec = Codec(prefix)
    expected = {
        stream.topic: event_ids(db, outbox, stream.aggregate_type)
        for stream in codec.streams.values()
        for outbox in ("order_service", "driver_service", "restaurant_service")
        if event_ids(db, outbox, stream.aggregate_type)
    }
    assert {stream.aggregate_type for stream in codec.streams.values() if stream.topic in expected} >= {
        "order",
        "order_ledger",
        "delivery",
        "restaurant",
        "driver",
    }
    start_relay(relay_poll_interval_s="0.2")
    for outbox in ("order_service", "driver_service", "restaurant_service"):
        wait_until(lambda outbox=outbox: outbox_rows(db, outbox) == 0, 120, what=f"{outbox} to drain")
    for topic, ids in expected.items():
        events = read_with_stock_deserializer(services, topic, len(ids))
        assert {str(event["event_id"]) for event in events} == ids, topic


def test_a_registry_killed_mid_drain_delays_new_versions_and_loses_nothing(services, db, prefix, start_relay) -> None:
    full_lifecycle(db, 30)  # orders and ledger entries: the relay meets (and caches) their versions first
    relay = start_relay(relay_poll_interval_s="0.2")
    wait_until(lambda: outbox_rows(db, "order_service") == 0, 60, what="the orders to drain")
    stack = LocalStack(load_settings())
    stack.kill("schema-registry")
    try:
        suffix = f"-{uuid.uuid4().hex[:6]}"
        Generator(db, seed=9, city_suffix=suffix).run_batch(10, datetime.now(UTC) - timedelta(hours=1), per_minute=10)
        waiting = event_ids(db, "restaurant_service", "restaurant")
        assert waiting
        # Orders flow on (their ids are cached); restaurants, a version the relay has not met, wait in the outbox.
        wait_until(lambda: outbox_rows(db, "order_service") == 0, 60, what="the new orders to drain")
        assert event_ids(db, "restaurant_service", "restaurant") == waiting
        wait_until(
            lambda: any(line["msg"] == "schema id unavailable; backlog kept in PostgreSQL" for line in relay.logs()),
            30,
            what="the relay to say why it waits",
        )
    finally:
        stack.restart("schema-registry")
    wait_until(lambda: outbox_rows(db, "restaurant_service") == 0, 120, what="the restaurants to drain")
    events = read_with_stock_deserializer(services, f"{prefix}nibble.restaurants", len(waiting))
    assert {str(event["event_id"]) for event in events} == waiting
    assert relay.running
