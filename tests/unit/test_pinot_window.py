"""The window and the minion as settings (pipeline/config.py) and as the table configs apply sends
(pipeline/analytics/tables.py): pure rules, no service."""

from __future__ import annotations

import json

import pytest

from pipeline.analytics.tables import TASK_TYPE, desired_specs, retention
from pipeline.config import PinotSettings, Settings, load_settings, schedule_cron, span_seconds
from pipeline.errors import ConfigError
from pipeline.resources import PINOT


@pytest.mark.parametrize(("text", "seconds"), [("3d", 259_200), ("12h", 43_200), ("30m", 1_800), ("10s", 10)])
def test_spans_are_pinot_periods_of_one_unit(text: str, seconds: int) -> None:
    assert span_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "3", "0d", "-1h", "1w", "1d2h", "1.5h"])
def test_other_spans_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a span"):
        span_seconds(text)


@pytest.mark.parametrize(
    ("span", "cron"),
    [
        ("10s", "0/10 * * * * ?"),
        ("1m", "0 0/1 * * * ?"),
        ("10m", "0 0/10 * * * ?"),
        ("6h", "0 0 0/6 * * ?"),
        ("1d", "0 0 0 * * ?"),
    ],
)
def test_the_minion_schedule_is_a_cron_on_the_clock(span: str, cron: str) -> None:
    assert schedule_cron(span) == cron


@pytest.mark.parametrize("span", ["7s", "7m", "5h", "2d"])
def test_a_schedule_that_does_not_divide_the_clock_is_refused(span: str) -> None:
    with pytest.raises(ValueError, match="does not divide"):
        schedule_cron(span)


@pytest.mark.parametrize(("span", "expected"), [("3d", ("DAYS", 3)), ("26h", ("HOURS", 26)), ("90m", ("MINUTES", 90))])
def test_retention_takes_the_largest_whole_unit(span: str, expected: tuple[str, int]) -> None:
    assert retention(span) == expected


def test_the_window_must_outlast_a_bucket_the_buffer_the_schedule_and_the_boundary_hour() -> None:
    PinotSettings(history_bucket="1d", history_buffer="10m", minion_schedule="10s", realtime_window="26h")
    with pytest.raises(ValueError, match="shorter than the history bucket"):
        PinotSettings(history_bucket="1d", history_buffer="12h", minion_schedule="10m", realtime_window="1d")


def test_a_bad_window_setting_stops_the_command_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIBBLE_PINOT_REALTIME_WINDOW", "1d")
    with pytest.raises(ConfigError, match=r"NIBBLE_PINOT_REALTIME_WINDOW: .*shorter than the history bucket"):
        load_settings()


def _settings(**pinot: object) -> Settings:
    settings = load_settings()
    return settings.model_copy(update={"pinot": settings.pinot.model_copy(update=pinot)})


def test_apply_fills_in_the_window_the_minion_and_the_prefix() -> None:
    settings = _settings(table_prefix="t1_", realtime_window="26h", history_bucket="1d", history_buffer="10m",
                         minion_schedule="10s", segment_rows=2000, segment_time="1m")  # fmt: skip
    specs = {spec.name: spec for spec in desired_specs(settings)}
    assert all(name.startswith("t1_") for name in specs)
    for spec in specs.values():
        assert spec.schema["schemaName"] == spec.table["tableName"] == spec.table["segmentsConfig"]["schemaName"]
        assert (
            spec.table["segmentsConfig"]["retentionTimeUnit"],
            spec.table["segmentsConfig"]["retentionTimeValue"],
        ) == (
            "HOURS",
            "26",
        )
        stream = spec.table["tableIndexConfig"]["streamConfigs"]
        assert (stream["realtime.segment.flush.threshold.rows"], stream["realtime.segment.flush.threshold.time"]) == (
            "2000",
            "1m",
        )
        task = spec.table.get("task", {}).get("taskTypeConfigsMap", {}).get(TASK_TYPE)
        if spec.offline is None:
            assert task is None, spec.name
        else:
            assert task == {
                "mergeType": "dedup",
                "bucketTimePeriod": "1d",
                "bufferTimePeriod": "10m",
                "schedule": "0/10 * * * * ?",
            }
            assert spec.offline["tableName"] == spec.name
        if spec.keys == "upsert":
            assert spec.table["ingestionConfig"]["filterConfig"] == {
                "filterFunction": "lessThan(plus(occurred_at, 93600000), now())"
            }


def test_the_append_only_streams_are_hybrid_and_split_on_the_time_an_event_was_written() -> None:
    specs = {spec.name: spec for spec in desired_specs(load_settings())}
    hybrid = {name for name, spec in specs.items() if spec.offline is not None}
    assert hybrid >= {"order_events", "delivery_events", "order_ledger"}
    for name in hybrid:
        spec = specs[name]
        # A re-sent copy carries its original's occurred_at, so both fall on the same side of the boundary;
        # and an entry written late about an old order lands in the realtime part, not below the boundary.
        assert spec.time_column == spec.offline["segmentsConfig"]["timeColumnName"] == "occurred_at", name
        assert spec.keys == "dedup", name  # the realtime part drops re-sends while they are in the window
        assert spec.offline["segmentsConfig"]["segmentPushFrequency"] == "HOURLY"  # boundary: 1 h before the end


def test_each_offline_part_indexes_as_its_realtime_part() -> None:
    for offline_file in sorted((PINOT / "offline").glob("*.json")):
        offline = json.loads(offline_file.read_text())
        realtime = json.loads((PINOT / "tables" / offline_file.name).read_text())
        indexes = {k: v for k, v in realtime["tableIndexConfig"].items() if k != "streamConfigs"}
        assert offline["tableIndexConfig"] == indexes, offline_file.name
        assert offline.get("fieldConfigList") == realtime.get("fieldConfigList"), offline_file.name
