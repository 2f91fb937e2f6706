"""The rules of `nibble verify` (pipeline/analytics/drift.py): buckets, classification, settling, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipeline.analytics import drift
from pipeline.analytics.drift import Drift, PinotState

FIELDS = ("status", "total_cents")


def test_pinot_null_stand_ins_compare_equal_to_postgres_nulls() -> None:
    assert drift.normalized(["null", -(2**63), float("-inf"), None]) == (None, None, None, None)
    assert drift.normalized([3.0, Decimal("1250"), 2.5, "true", True, "x"]) == (3, 1250, 2.5, True, True, "x")


def test_differing_buckets_compare_every_group_of_a_bucket() -> None:
    pg = drift.bucket_sums([(0, "placed", 2, 100), (0, "delivered", 1, 50), (60, "placed", 1, 10)], 1)
    pinot = drift.bucket_sums([(0.0, "placed", 2.0, 100.0), (0, "delivered", 1, 50), (60, "placed", 1, 11)], 1)
    assert drift.differing_buckets(pg, pinot) == [60]
    # a group on one side only differs too
    assert drift.differing_buckets(pg, {**pinot, (60, "placed"): (1, 10), (120, "placed"): (1, 1)}) == [120]
    assert drift.differing_buckets(pg, pg) == []


def test_state_classification_names_each_kind() -> None:
    pg = {"a": ("delivered", 100), "b": ("placed", 10), "c": ("placed", 5)}
    pinot = {
        "b": PinotState(("placed", 10), 7, "OrderPlaced"),
        "c": PinotState(("confirmed", 5), 9, "OrderStatusChanged"),
        "x": PinotState(("placed", 1), 3, "OrderPlaced"),
    }
    drifts = drift.classify_state("orders", FIELDS, pg, pinot)
    assert [(d.kind, d.aggregate_id) for d in drifts] == [("missing", "a"), ("stale", "c"), ("extra", "x")]
    stale = drifts[1].detail
    assert "OrderStatusChanged at position 9" in stale and "status 'confirmed' (PostgreSQL 'placed')" in stale
    assert "total_cents" not in stale


def test_ledger_classification() -> None:
    one = (1, 0, 1000, 800, 2)
    pg = {"ok": one, "lost": one, "twice": one, "old": one, "uncounted-elsewhere": one}
    pinot = {
        "ok": one,
        "twice": (2, 0, 2000, 1600, 4),
        "old": (1, 0, 900, 700, 2),
        "stranger": (1, 0, 5, 5, 1),
        "left": (0, 0, 0, 0, 0),  # entries that cancel out: nothing counted, nothing expected
        "uncounted-elsewhere": one,
    }
    kinds = {d.aggregate_id: d.kind for d in drift.classify_ledger("order_ledger", pg, pinot)}
    assert kinds == {"lost": "missing", "twice": "duplicated", "old": "stale", "stranger": "extra"}


def test_duplicated_events_are_two_rows_of_one_position() -> None:
    rows = [("a", 1, "e1"), ("a", 2, "e2"), ("b", 3, "e3"), ("b", 3, "e4"), ("b", 3, "e5"), ("c", 4, "e6")]
    assert drift.duplicated_events("order_events", rows) == [Drift("order_events", "duplicated", "b")]
    assert drift.duplicated_events("order_events", rows)[0].detail == "position 3 x3"


def test_only_steady_aggregates_without_pending_events_are_compared() -> None:
    before = {"a": (1,), "b": (1,), "c": (1,)}
    after = {"a": (1,), "b": (2,), "c": (1,), "d": (1,)}  # b changed, d appeared
    assert drift.steady(["a", "b", "c", "d"], before, after, pending=["c"]) == {"a"}
    assert drift.steady([], before, after, pending=[]) == set()
    # a candidate absent from both reads (an extra row in Pinot) is steady, and so compared
    assert drift.steady(["a", "x"], before, after, pending=[]) == {"a", "x"}


def test_retention_window() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert drift.kept_for({"retentionTimeUnit": "days", "retentionTimeValue": "3"}) == timedelta(days=3)
    assert drift.kept_for({"retentionTimeUnit": "SECONDS", "retentionTimeValue": 90}) == timedelta(seconds=90)
    assert drift.kept_for({"timeColumnName": "placed_at"}) is None
    # a hybrid table keeps rows as long as its longer part; a part without retention keeps them for ever
    assert drift.longest([timedelta(days=3), timedelta(days=30)]) == timedelta(days=30)
    assert drift.longest([timedelta(days=3), None]) is None
    assert drift.longest([]) is None
    assert drift.retention_cutoff(now, timedelta(days=3650)) is None
    assert drift.retention_cutoff(now, None) is None
    cutoff = drift.retention_cutoff(now, timedelta(days=7))
    assert cutoff == now - timedelta(days=7) + timedelta(hours=16, minutes=48)  # a tenth of it as margin
    assert drift.retention_cutoff(now, timedelta(hours=5)) == now - timedelta(hours=4)  # at least an hour
    assert drift.clamp(now - timedelta(days=30), cutoff) == cutoff
    assert drift.clamp(now - timedelta(days=1), cutoff) == now - timedelta(days=1)
    assert drift.clamp(now, None) == now


def test_summary_and_ranges() -> None:
    drifts = [Drift("orders", "stale", "a"), Drift("orders", "stale", "b"), Drift("drivers", "missing", "c")]
    assert drift.summary(drifts) == {("orders", "stale"): 2, ("drivers", "missing"): 1}
    assert drift.merge_ranges([(120, 180), (0, 60), (60, 120), (300, 360)]) == [(0, 180), (300, 360)]
