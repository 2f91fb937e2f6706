"""Read a whole topic back for assertions: every message with its key, headers and decoded value."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipeline.contract.codec import Codec


@dataclass(frozen=True)
class Received:
    key: str
    headers: dict[str, str]
    record: dict[str, Any]
    timestamp_ms: int


def read_topic(
    bootstrap: str, topic: str, aggregate_type: str, expect_at_least: int, timeout_s: float = 60
) -> list[Received]:
    """Every message of the topic from the beginning, waiting until at least `expect_at_least` arrived
    and the end of every partition was reached."""
    codec = Codec()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    received: list[Received] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(message.partition())
                    if len(received) >= expect_at_least and at_eof >= set(partitions):
                        break
                continue
            at_eof.discard(message.partition())
            headers = {k: v.decode() for k, v in message.headers() or []}
            record = codec.decode(message.value(), aggregate_type, int(headers["schema_version"]))
            received.append(Received(message.key().decode(), headers, record, message.timestamp()[1]))
    finally:
        consumer.close()
    return received
