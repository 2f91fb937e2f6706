"""Moments the analysts type: ISO 8601 times, `now`, `today`, `yesterday`, and offsets back from now
(`-90s`, `-30m`, `-2h`, `-7d`, `-2w`). Pure: the caller passes the current time and the time zone.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import UsageError

OFFSET = re.compile(r"^-(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
FORMS = "an ISO time (2026-11-20 or 2026-11-20T10:00), -2h, -7d, now, today or yesterday"


def parse_moment(text: str, now: datetime, tz: tzinfo) -> datetime:
    """The moment `text` names, as an aware datetime; a time without an offset is read in `tz`.

    `today` and `yesterday` are midnight in `tz`; offsets count back from `now` (an aware datetime).
    """
    word = text.strip().lower()
    local_now = now.astimezone(tz)
    midnight = datetime(local_now.year, local_now.month, local_now.day, tzinfo=tz)
    if word == "now":
        return now
    if word == "today":
        return midnight
    if word == "yesterday":
        # One calendar day back, then midnight again: a DST change makes that day 23 or 25 hours long.
        day = (midnight - timedelta(hours=12)).date()
        return datetime(day.year, day.month, day.day, tzinfo=tz)
    if offset := OFFSET.match(word):
        return now - timedelta(**{UNITS[offset.group(2)]: int(offset.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"cannot read the time {text!r}: use {FORMS}") from None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def time_zone(name: str) -> tzinfo:
    """The IANA zone called `name` (`UTC`, `Europe/Amsterdam`)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Amsterdam") from None
