"""Topics as the relay and `nibble pinot apply` create them: compacted by aggregate, history kept for the
retention setting; topics made before that (plain delete policy) are brought in line, idempotently."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from connectors import kafka
from pipeline.contract.codec import Codec
from pipeline.contract.topics import ensure_stream_topics
from tests.support.polling import wait_until
from tests.support.services import Services


def _configs(
    bootstrap: str, topics: list[str], second: str = "min.compaction.lag.ms"
) -> dict[str, tuple[str, str]] | None:
    """Each topic's (cleanup.policy, `second` config); None while Kafka does not know a topic yet."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic) for topic in topics])
    try:
        return {
            resource.name: (configs["cleanup.policy"].value, configs[second].value)
            for resource, future in described.items()
            for configs in [future.result(timeout=20)]
        }
    except KafkaException:
        return None


def test_topics_are_compacted_and_older_ones_are_altered_once(services: Services, prefix: str) -> None:
    settings = services.settings(prefix)
    endpoints = settings.endpoints
    topics = Codec(prefix).topics
    legacy = topics[0]  # as a relay before compaction made it: delete policy, 7-day retention
    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap_servers})
    for future in admin.create_topics([NewTopic(legacy, num_partitions=2, replication_factor=1)]).values():
        future.result(timeout=20)
    wait_until(lambda: _configs(endpoints.kafka_bootstrap_servers, [legacy]) == {legacy: ("delete", "0")}, 30)

    kafka.ensure_topics(endpoints.kafka_bootstrap_servers, topics, 4, endpoints.topic_config)

    week = str(168 * 3_600_000)
    assert endpoints.topic_config == {"cleanup.policy": "compact", "min.compaction.lag.ms": week}
    compacted = {topic: ("compact", week) for topic in topics}
    wait_until(lambda: _configs(endpoints.kafka_bootstrap_servers, topics) == compacted, 30, what="compacted topics")
    assert {p: w[0] for p, w in kafka.watermarks(endpoints.kafka_bootstrap_servers, legacy).items()} == {0: 0, 1: 0}
    kafka.ensure_topics(endpoints.kafka_bootstrap_servers, topics, 4, endpoints.topic_config)  # a no-op
    assert _configs(endpoints.kafka_bootstrap_servers, topics) == compacted


def test_the_ledger_topic_keeps_every_entry_and_the_state_topics_are_compacted(services: Services, prefix: str) -> None:
    endpoints = services.settings(prefix).endpoints
    codec = Codec(prefix)
    ensure_stream_topics(endpoints, codec)
    ledger = f"{prefix}nibble.order_ledger"
    expected = {topic: ("compact", "604800000") for topic in codec.topics} | {ledger: ("delete", "-1")}
    wait_until(
        lambda: _configs(endpoints.kafka_bootstrap_servers, codec.topics, "retention.ms") == expected,
        30,
        what="the ledger uncompacted, the state topics compacted",
    )
