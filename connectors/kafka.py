"""Kafka: producer configuration, topic creation, a metadata probe, and its failures as one line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from pipeline.errors import ServiceFailed

# librdkafka's own log lines (e.g. a refused connection) go through Python logging, hence JSON in the relay.
LOG = logging.getLogger("nibble.kafka")
_QUIET = logging.getLogger("nibble.kafka.probe")
_QUIET.setLevel(logging.CRITICAL + 1)  # a probe's connection-refused chatter is its expected answer


@contextmanager
def errors(bootstrap: str, setting: str) -> Iterator[None]:
    """Kafka out of reach as a ServiceFailed naming its address and `setting`. Opt-in: the relay catches the
    driver's own error to back off and try again."""
    try:
        yield
    except KafkaException as exc:
        raise ServiceFailed("Kafka", bootstrap, setting, str(exc)) from exc


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


def ensure_topics(bootstrap: str, topics: list[str], partitions: int, config: dict[str, str]) -> None:
    """Create the topics that do not exist yet with `config`, and set `config` on existing ones where it
    differs (idempotent; their partitions are left as they are). Raises KafkaException when Kafka does not
    answer."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": LOG})
    new = [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config) for topic in topics]
    existing = []
    for topic, future in admin.create_topics(new, request_timeout=10).items():
        try:
            future.result(timeout=20)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            existing.append(topic)
    if not existing:
        return
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic) for topic in existing])
    stale = [
        resource.name
        for resource, future in described.items()
        if any(future.result(timeout=20)[key].value != value for key, value in config.items())
    ]
    if stale:
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in config.items()
        ]
        resources = [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries) for topic in stale]
        for future in admin.incremental_alter_configs(resources).values():
            future.result(timeout=20)


def watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """Each partition's (first, next) offset: the first still held, and the one the next record gets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "nibble-watermarks", "logger": LOG})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    finally:
        consumer.close()


def reachable(bootstrap: str, timeout_s: float = 2) -> bool:
    """Whether a broker answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False
