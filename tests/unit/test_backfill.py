"""The backfill's pure rules: how much of a chunk counts as done, the throttle, the ETA."""

from __future__ import annotations

import uuid

import pytest

from pipeline.outbox.backfill import Progress, done_prefix, throttle_delay

IDS = [uuid.UUID(int=n) for n in (3, 5, 8, 13)]


def test_a_chunk_without_gaps_is_done_whole() -> None:
    assert done_prefix(IDS, None) == IDS


def test_a_chunk_is_done_only_up_to_the_first_row_it_could_not_lock() -> None:
    assert done_prefix(IDS, uuid.UUID(int=9)) == IDS[:3]
    assert done_prefix(IDS, uuid.UUID(int=4)) == IDS[:1]


def test_a_chunk_whose_first_row_is_held_does_nothing() -> None:
    assert done_prefix(IDS, uuid.UUID(int=1)) == []


def test_uuid_order_is_postgresql_order() -> None:
    """PostgreSQL compares uuids byte by byte, Python by their 128-bit value: the same order."""
    low, high = uuid.UUID("00000000-0000-4000-8000-0000000000ff"), uuid.UUID("00000000-0000-4000-8000-000000000100")
    assert low < high and low.bytes < high.bytes


@pytest.mark.parametrize(
    ("rows", "elapsed", "rate", "delay"),
    [(1000, 0.1, 5000, 0.1), (1000, 0.5, 5000, 0.0), (0, 0.0, 5000, 0.0), (5000, 1.0, 5000, 0.0)],
)
def test_the_throttle_holds_the_rate(rows: int, elapsed: float, rate: float, delay: float) -> None:
    assert throttle_delay(rows, elapsed, rate) == pytest.approx(delay)


def test_eta_from_the_rate_of_this_run() -> None:
    assert Progress("orders", 1000, 5000, 1000, 500.0).eta_s == pytest.approx(8.0)
    assert Progress("orders", 0, 5000, 0, 0.0).eta_s is None
