"""The generator's business time: lunch and dinner peaks, weekends, delivery durations (no service)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.devstack.generator import STEP_MINUTES, demand, parse_span

WEDNESDAY = datetime(2026, 11, 25, tzinfo=UTC)  # midnight UTC
SATURDAY = WEDNESDAY + timedelta(days=3)


def at(day: datetime, local_hour: int) -> datetime:
    return day + timedelta(hours=local_hour - 1)  # the cities are about UTC+1


def test_lunch_and_dinner_are_the_peaks() -> None:
    hours = [demand(at(WEDNESDAY, h)) for h in range(24)]
    assert max(hours[11:15]) > 2 * hours[15] and max(hours[18:22]) > 2 * hours[15]
    assert max(hours[2:6]) < 0.1 * max(hours)


def test_weekends_order_more_than_midweek() -> None:
    assert demand(at(SATURDAY, 19)) > demand(at(WEDNESDAY, 19))
    assert sum(demand(at(SATURDAY, h)) for h in range(24)) > sum(demand(at(WEDNESDAY, h)) for h in range(24))


def test_a_delivery_takes_25_to_45_minutes_and_pickup_comes_before_handover() -> None:
    after, low, high = STEP_MINUTES["deliver"]
    assert (after, low, high) == ("confirm", 25, 45)
    latest_pickup = STEP_MINUTES["ready"][2] + STEP_MINUTES["pickup"][2]
    earliest_handover = STEP_MINUTES["confirm"][1] + low
    assert latest_pickup < earliest_handover


@pytest.mark.parametrize(
    ("text", "span"), [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90))]
)
def test_history_spans(text: str, span: timedelta) -> None:
    assert parse_span(text) == span


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "0d", "7w", "1.5h"])
def test_a_bad_span_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a span"):
        parse_span(text)
