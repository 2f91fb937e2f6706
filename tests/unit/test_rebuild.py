"""The rebuild's pure rules: where a table is refilled from, and when it has read its topic."""

from __future__ import annotations

from pipeline.analytics.rebuild import RebuildReport, caught_up, refill_source


def test_a_complete_topic_refills_from_kafka() -> None:
    assert refill_source(complete_topic=True, state_table=True) == "kafka"


def test_a_trimmed_topic_refills_a_state_table_through_a_backfill() -> None:
    assert refill_source(complete_topic=False, state_table=True) == "backfill"


def test_a_history_table_always_refills_from_kafka() -> None:
    assert refill_source(complete_topic=False, state_table=False) == "kafka"


def test_caught_up_once_every_partition_with_records_is_read_to_its_end() -> None:
    assert caught_up({0: 10, 1: 7}, {0: 10, 1: 7, 2: 0})
    assert not caught_up({0: 10, 1: 6}, {0: 10, 1: 7})
    assert not caught_up({0: 10}, {0: 10, 1: 7}), "a partition without a consuming segment yet is not read"


def test_a_history_table_has_nothing_to_compare_with() -> None:
    assert RebuildReport("order_events", "kafka", 10, None, 1.0).equal
    assert not RebuildReport("orders", "kafka", 9, 10, 1.0).equal
