"""Kafka: producer configuration and topic creation."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.config import Settings

# librdkafka's own log lines (e.g. a refused connection) go through Python logging, hence JSON in the relay.
LOG = logging.getLogger("nibble.kafka")


def producer_config(settings: Settings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "logger": LOG,
        "enable.idempotence": True,  # with acks=all: no duplicates or reordering from producer retries
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "message.timeout.ms": settings.relay_delivery_timeout_ms,
        "message.max.bytes": settings.relay_max_message_bytes + 64 * 1024,
    }


def ensure_topics(settings: Settings, topics: list[str]) -> None:
    """Create the topics that do not exist yet (idempotent); existing ones are left as they are.
    Raises KafkaException when Kafka does not answer (the relay backs off and retries)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "logger": LOG})
    new = [NewTopic(t, num_partitions=settings.kafka_topic_partitions, replication_factor=1) for t in topics]
    for future in admin.create_topics(new, request_timeout=10).values():
        try:
            future.result(timeout=20)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
