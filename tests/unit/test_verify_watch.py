"""The watch's gauges (pipeline/analytics/watch.py) from one verification's report: what the alerts read."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.analytics import watch
from pipeline.analytics.drift import Drift
from pipeline.analytics.verify import Report, Scope, StreamResult


def value(name: str, **labels: str) -> float | None:
    return watch.REGISTRY.get_sample_value(name, labels)


def test_gauges_follow_the_last_report() -> None:
    since, until = datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, 12, tzinfo=UTC)
    scope = Scope(since, until, streams=("orders", "drivers"))
    drifts = [Drift("orders", "stale", "a"), Drift("orders", "stale", "b"), Drift("orders", "missing", "c")]
    report = Report(
        scope,
        [StreamResult("orders", since, 2, 1, drifts, in_flight=4), StreamResult("drivers", None, 3, 0)],
        seconds=1.5,
        ingestion_lag={"orders": 12, "drivers": 0},
    )
    watch.record(report)
    assert value("nibble_verify_drift_aggregates", stream="orders", kind="stale") == 2
    assert value("nibble_verify_drift_aggregates", stream="orders", kind="missing") == 1
    assert value("nibble_verify_drift_aggregates", stream="drivers", kind="extra") == 0
    assert value("nibble_verify_in_flight_aggregates", stream="orders") == 4
    assert value("nibble_verify_window_start_timestamp_seconds") == since.timestamp()
    assert value("nibble_verify_window_end_timestamp_seconds") == until.timestamp()
    assert value("nibble_verify_duration_seconds") == 1.5
    assert value("nibble_pinot_ingestion_lag_messages", table="orders") == 12

    # the drift repaired: the next report sets the gauges back to 0
    watch.record(Report(scope, [StreamResult("orders", since, 2, 0)], 1.0, {"orders": 0}))
    assert value("nibble_verify_drift_aggregates", stream="orders", kind="stale") == 0
