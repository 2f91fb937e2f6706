"""Every stream's topic, created with its Kafka configs (idempotent): a state stream's is compacted to the newest
event per aggregate once the history retention has passed; the order ledger's keeps every entry, because its
sums need them all."""

from __future__ import annotations

from connectors import kafka
from pipeline.config import Endpoints
from pipeline.contract.codec import Codec

KEPT_WHOLE = {"cleanup.policy": "delete", "retention.ms": "-1"}


def ensure_stream_topics(endpoints: Endpoints, codec: Codec) -> None:
    """Raises KafkaException when Kafka does not answer."""
    for compacted, config in ((True, endpoints.topic_config), (False, KEPT_WHOLE)):
        topics = [stream.topic for stream in codec.streams.values() if stream.compacted is compacted]
        if topics:
            kafka.ensure_topics(endpoints.kafka_bootstrap_servers, topics, endpoints.kafka_topic_partitions, config)
