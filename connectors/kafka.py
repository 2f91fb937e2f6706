"""Kafka: producer configuration, topic creation and a metadata probe."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

# librdkafka's own log lines (e.g. a refused connection) go through Python logging, hence JSON in the relay.
LOG = logging.getLogger("nibble.kafka")
_QUIET = logging.getLogger("nibble.kafka.probe")
_QUIET.setLevel(logging.CRITICAL + 1)  # a probe's connection-refused chatter is its expected answer


def producer_config(bootstrap: str, delivery_timeout_ms: int, max_message_bytes: int) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "logger": LOG,
        "enable.idempotence": True,  # with acks=all: no duplicates or reordering from producer retries
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "message.timeout.ms": delivery_timeout_ms,
        "message.max.bytes": max_message_bytes + 64 * 1024,
    }


def ensure_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Create the topics that do not exist yet (idempotent); existing ones are left as they are.
    Raises KafkaException when Kafka does not answer."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": LOG})
    new = [NewTopic(topic, num_partitions=partitions, replication_factor=1) for topic in topics]
    for future in admin.create_topics(new, request_timeout=10).values():
        try:
            future.result(timeout=20)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def reachable(bootstrap: str, timeout_s: float = 2) -> bool:
    """Whether a broker answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False
