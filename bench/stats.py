"""Percentiles, defined once for every benchmark: nearest rank (always a value that was measured), and only
from enough samples to be more than the maximum (p99 needs 100); below that the maximum is printed, named
as such."""

from __future__ import annotations

import math
from collections.abc import Sequence


def samples_needed(p: float) -> int:
    """The fewest samples whose nearest-rank p-th percentile is not the maximum: 100 for p99, 2 for p50."""
    return math.ceil(100 / (100 - p))  # n * (1 - p/100) >= 1: at least one sample above the rank


def percentile(samples: Sequence[float], p: float) -> float | None:
    """The nearest-rank p-th percentile, or None when there are too few samples for it to differ from the max."""
    if len(samples) < samples_needed(p):
        return None
    ordered = sorted(samples)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def cell(samples: Sequence[float], p: float, digits: int = 0) -> str:
    """A percentile for a table: its value, or 'max X (n < N)' when the samples are too few."""
    value = percentile(samples, p)
    if value is None:
        return f"max {max(samples):.{digits}f} (n={len(samples)} < {samples_needed(p)})" if samples else "no samples"
    return f"{value:.{digits}f}"


def describe(samples: Sequence[float], unit: str = "ms", digits: int = 0) -> str:
    """'n=1,500: p50 10 ms, p99 35 ms, max 54 ms', or with too few samples for a p99 'n=30: p50 10 ms, max
    54 ms (too few samples for a p99: 100 needed)'."""
    if not samples:
        return "n=0: no samples"
    parts = [f"n={len(samples):,}:"]
    for p in (50, 99):
        value = percentile(samples, p)
        if value is not None:
            parts.append(f"p{p} {value:.{digits}f} {unit},")
    parts.append(f"max {max(samples):.{digits}f} {unit}")
    if percentile(samples, 99) is None:
        parts.append(f"(too few samples for a p99: {samples_needed(99)} needed)")
    return " ".join(parts)
