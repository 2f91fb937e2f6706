"""The benchmarks' one percentile rule (bench/stats.py)."""

from __future__ import annotations

from bench.stats import cell, describe, percentile, samples_needed


def test_p99_needs_100_samples_and_is_then_below_the_maximum() -> None:
    assert (samples_needed(99), samples_needed(50)) == (100, 2)
    assert percentile(list(range(1, 100)), 99) is None  # 99 samples: the "p99" would be the maximum
    hundred = list(range(1, 101))
    assert percentile(hundred, 99) == 99 and percentile(hundred, 50) == 50


def test_a_percentile_is_a_measured_value() -> None:
    assert percentile([3.0, 1.0, 2.0, 10.0], 50) == 2.0


def test_too_few_samples_print_the_maximum_and_say_so() -> None:
    thirty = [float(n) for n in range(30)]
    assert cell(thirty, 99) == "max 29 (n=30 < 100)"
    assert describe(thirty) == "n=30: p50 14 ms, max 29 ms (too few samples for a p99: 100 needed)"
    assert describe([float(n) for n in range(200)]) == "n=200: p50 99 ms, p99 197 ms, max 199 ms"
    assert describe([]) == "n=0: no samples"
