"""The rules of `nibble verify`, apart from any I/O: which buckets differ, which aggregates drift and how.

PostgreSQL is the truth. Pinot drifts from it in four ways, per aggregate:

- missing: PostgreSQL has the aggregate (it is visible to analytics), Pinot does not;
- extra: Pinot has a row for an aggregate PostgreSQL never wrote;
- stale: both have it, but Pinot's copy is not PostgreSQL's current state (an event lost before or after
  publication, or an older event that won over a newer one);
- duplicated: Pinot counts one event more than once (two history rows of one outbox position, or an order
  counted more than once by the ledger).

Values come in as the query answers give them; `normalize` maps Pinot's stand-ins for "no value" to None so
that both sides compare equal.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

KINDS = ("missing", "extra", "stale", "duplicated")
NULL_MILLIS = -(2**63)  # Pinot's default null of a LONG column
NULL_TEXT = "null"  # and of a STRING column
TIME_UNITS = {
    "DAYS": timedelta(days=1),
    "HOURS": timedelta(hours=1),
    "MINUTES": timedelta(minutes=1),
    "SECONDS": timedelta(seconds=1),
}
FOR_EVER = timedelta(days=3650)  # a retention this long or none at all: every row is compared

BucketKey = tuple[Any, ...]  # (bucket, *dimensions): the bucket is the first part
Measures = tuple[Any, ...]


@dataclass(frozen=True, order=True)
class Drift:
    stream: str
    kind: str
    aggregate_id: str
    detail: str = field(default="", compare=False)


def normalize(value: Any) -> Any:
    """One value as both sides compare it: Pinot's null stand-ins become None, booleans stay booleans, whole
    numbers become ints (Pinot answers sums as floats), other numbers floats."""
    if value is None or value == NULL_TEXT:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value, value)
    if isinstance(value, int):
        return None if value == NULL_MILLIS else value
    number = float(value)
    if not math.isfinite(number):  # Pinot's default null of a DOUBLE column is -Infinity
        return None
    if number.is_integer() and abs(number) < 2**53:
        return None if int(number) == NULL_MILLIS else int(number)
    return number


def normalized(row: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(normalize(value) for value in row)


def bucket_sums(rows: Iterable[Sequence[Any]], dimensions: int) -> dict[BucketKey, Measures]:
    """Grouped query rows (bucket, *dimensions, *measures) as {(bucket, *dimensions): measures}."""
    sums: dict[BucketKey, Measures] = {}
    for row in rows:
        values = normalized(row)
        sums[values[: 1 + dimensions]] = values[1 + dimensions :]
    return sums


def differing_buckets(postgres: Mapping[BucketKey, Measures], pinot: Mapping[BucketKey, Measures]) -> list[Any]:
    """The buckets where any group's measures differ, or a group exists on one side only; ascending."""
    keys = postgres.keys() | pinot.keys()
    return sorted({key[0] for key in keys if postgres.get(key) != pinot.get(key)})


@dataclass(frozen=True)
class PinotState:
    """An upsert table's row: the compared values, and where it came from."""

    values: tuple[Any, ...]
    outbox_position: int
    event_type: str


def classify_state(
    stream: str,
    fields: Sequence[str],
    postgres: Mapping[str, tuple[Any, ...]],
    pinot: Mapping[str, PinotState],
) -> list[Drift]:
    """Missing, extra or stale aggregates of a state (upsert) table; the detail names what differs."""
    drifts = []
    for aggregate_id in sorted(postgres.keys() | pinot.keys()):
        truth, row = postgres.get(aggregate_id), pinot.get(aggregate_id)
        if row is None:
            drifts.append(Drift(stream, "missing", aggregate_id, "in PostgreSQL, not in Pinot"))
        elif truth is None:
            drifts.append(Drift(stream, "extra", aggregate_id, f"not in PostgreSQL; Pinot holds {_origin(row)}"))
        elif truth != row.values:
            changed = [
                f"{name} {theirs!r} (PostgreSQL {ours!r})"
                for name, ours, theirs in zip(fields, truth, row.values, strict=True)
                if ours != theirs
            ]
            drifts.append(Drift(stream, "stale", aggregate_id, f"Pinot holds {_origin(row)}: " + ", ".join(changed)))
    return drifts


def _origin(row: PinotState) -> str:
    return f"{row.event_type} at position {row.outbox_position}"


LEDGER_MEASURES = ("orders", "cancelled", "gmv_cents", "subtotal_cents", "items")


def classify_ledger(
    stream: str, postgres: Mapping[str, tuple[int, ...]], pinot: Mapping[str, tuple[int, ...]]
) -> list[Drift]:
    """Per order, the ledger's sums against what PostgreSQL's order state says they are (LEDGER_MEASURES).
    An order the ledger has not counted yet (orders_outside_ledger) is absent from `postgres`; entries that
    sum to zero everywhere are no row at all."""
    zero = (0,) * len(LEDGER_MEASURES)
    drifts = []
    for order_id in sorted(postgres.keys() | pinot.keys()):
        truth, sums = postgres.get(order_id), pinot.get(order_id, zero)
        if truth == sums or (truth is None and sums == zero):
            continue
        described = _sums(sums)
        if truth is None:
            drifts.append(Drift(stream, "extra", order_id, f"not counted by PostgreSQL; Pinot sums {described}"))
        elif sums == zero:
            drifts.append(Drift(stream, "missing", order_id, f"no entries in Pinot; PostgreSQL {_sums(truth)}"))
        elif sums[0] > truth[0]:
            drifts.append(Drift(stream, "duplicated", order_id, f"counted {sums[0]} times; Pinot sums {described}"))
        else:
            drifts.append(Drift(stream, "stale", order_id, f"Pinot sums {described}; PostgreSQL {_sums(truth)}"))
    return drifts


def _sums(values: tuple[int, ...]) -> str:
    return " ".join(f"{name}={value}" for name, value in zip(LEDGER_MEASURES, values, strict=True))


def duplicated_events(stream: str, rows: Iterable[tuple[str, int, str]]) -> list[Drift]:
    """History rows (aggregate id, outbox position, event id): an aggregate with more than one row for one
    position holds a duplicated event (re-sent under a new event id, or outside the de-duplication window)."""
    seen = Counter((aggregate_id, position) for aggregate_id, position, _ in rows)
    by_aggregate: dict[str, list[str]] = {}
    for (aggregate_id, position), count in sorted(seen.items()):
        if count > 1:
            by_aggregate.setdefault(aggregate_id, []).append(f"position {position} x{count}")
    return [Drift(stream, "duplicated", a, ", ".join(details)) for a, details in sorted(by_aggregate.items())]


def steady(
    candidates: Iterable[str], before: Mapping[str, Any], after: Mapping[str, Any], pending: Iterable[str]
) -> set[str]:
    """The candidates whose PostgreSQL state did not change between two reads (absent from both counts as
    unchanged: Pinot's extra rows) and that have no event waiting in an outbox or a dead-letter table: only
    these can be compared with a Pinot read taken in between."""
    waiting = set(pending)
    return {a for a in candidates if before.get(a) == after.get(a) and a not in waiting}


def kept_for(segments_config: Mapping[str, Any]) -> timedelta | None:
    """How long a table part keeps rows, from its segmentsConfig; None when it sets no retention (for ever)."""
    unit, value = segments_config.get("retentionTimeUnit"), segments_config.get("retentionTimeValue")
    if unit is None or value is None:
        return None
    return TIME_UNITS[str(unit).upper()] * int(value)


def longest(kept: Iterable[timedelta | None]) -> timedelta | None:
    """A table's retention from its parts' (a hybrid table has a realtime and an offline part): the longest,
    None (for ever) when a part keeps rows for ever or there is no part."""
    spans = list(kept)
    return None if not spans or None in spans else max(span for span in spans if span is not None)


def retention_cutoff(now: datetime, keep: timedelta | None) -> datetime | None:
    """The oldest time a table keeps rows for, plus a margin of a tenth of its retention, at least an hour (its
    retention deletes whole segments, so rows near the edge may or may not be there); None when it keeps rows
    for ever or ten years or more."""
    if keep is None or keep >= FOR_EVER:
        return None
    return now - keep + max(keep / 10, timedelta(hours=1))


def clamp(since: datetime, cutoff: datetime | None) -> datetime:
    """The window's start, moved up to the table's retention cutoff: rows aged out of Pinot are not drift."""
    return since if cutoff is None or cutoff <= since else cutoff


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent or overlapping [lo, hi) ranges as one: fewer row queries for runs of differing minutes."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def summary(drifts: Iterable[Drift]) -> dict[tuple[str, str], int]:
    """Drifting aggregates per (stream, kind)."""
    return dict(Counter((d.stream, d.kind) for d in drifts))
