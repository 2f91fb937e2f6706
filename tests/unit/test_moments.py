"""The times analysts type for --since/--until: ISO, offsets back from now, today and yesterday."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.analytics.moments import parse_moment, time_zone
from pipeline.errors import UsageError

NOW = datetime(2026, 11, 25, 10, 37, 12, tzinfo=UTC)
UTC_ZONE = time_zone("UTC")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-2h", NOW - timedelta(hours=2)),
        ("-30m", NOW - timedelta(minutes=30)),
        ("-90s", NOW - timedelta(seconds=90)),
        ("-7d", NOW - timedelta(days=7)),
        ("-2w", NOW - timedelta(weeks=2)),
        ("now", NOW),
        ("today", datetime(2026, 11, 25, tzinfo=UTC)),
        ("Yesterday", datetime(2026, 11, 24, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T10:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T10:00:00+02:00", datetime(2026, 11, 20, 8, tzinfo=UTC)),
        ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
    ],
)
def test_forms(text: str, expected: datetime) -> None:
    assert parse_moment(text, NOW, UTC_ZONE) == expected


def test_today_and_naive_times_are_read_in_the_zone_asked_for() -> None:
    amsterdam = time_zone("Europe/Amsterdam")
    late = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # already the 26th in Amsterdam
    assert parse_moment("today", late, amsterdam) == datetime(2026, 11, 25, 23, tzinfo=UTC)
    assert parse_moment("2026-11-20T10:00", NOW, amsterdam) == datetime(2026, 11, 20, 9, tzinfo=UTC)


def test_yesterday_across_a_daylight_saving_change_is_midnight() -> None:
    amsterdam = time_zone("Europe/Amsterdam")
    # 2026-03-29 is 23 hours long in Amsterdam; the day after, "yesterday" is still its midnight.
    after = datetime(2026, 3, 30, 0, 30, tzinfo=amsterdam)
    assert parse_moment("yesterday", after, amsterdam) == datetime(2026, 3, 29, tzinfo=amsterdam)


@pytest.mark.parametrize("text", ["2h", "-2x", "-h", "last week", "2026-13-01", ""])
def test_anything_else_is_refused_with_the_forms(text: str) -> None:
    with pytest.raises(UsageError, match="-2h, -7d, now, today or yesterday"):
        parse_moment(text, NOW, UTC_ZONE)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown time zone 'Mars/Olympus'"):
        time_zone("Mars/Olympus")
