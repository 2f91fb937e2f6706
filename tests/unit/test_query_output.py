"""How `nibble query` prints answers: times, money, counts, ratios and nulls in table, csv and json."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from pipeline.analytics.moments import time_zone
from pipeline.analytics.queries import Column, Result
from pipeline.cli.query import render

RESULT = Result(
    name="gmv_by_city",
    columns=(
        Column("city", "text"),
        Column("period", "time"),
        Column("gmv_cents", "money"),
        Column("orders", "count"),
        Column("late_share", "ratio"),
        Column("avg_items", "number"),
    ),
    rows=[
        ["Amsterdam", datetime(2026, 11, 24, 13, tzinfo=UTC), 816641500, 12370, 0.12345, 2.5],
        ["Berlin", None, None, 0, None, None],
    ],
    since=datetime(2026, 11, 24, 0, tzinfo=UTC),
    until=datetime(2026, 11, 25, 0, tzinfo=UTC),
    broker_ms=12,
)


def test_table_shows_iso_times_currency_units_counts_and_percentages() -> None:
    lines = render(RESULT, "table", time_zone("UTC")).splitlines()
    assert lines[0].split() == ["city", "period", "gmv", "orders", "late_share", "avg_items"]
    assert lines[1].split() == ["Amsterdam", "2026-11-24T13:00:00+00:00", "8,166,415.00", "12,370", "12.3%", "2.50"]
    assert lines[2].split() == ["Berlin", "-", "-", "0", "-", "-"]
    assert lines[3] == (
        "(2 rows; 2026-11-24T00:00:00+00:00 .. 2026-11-25T00:00:00+00:00; money in currency units; Pinot 12 ms)"
    )


def test_table_shows_times_in_the_zone_asked_for() -> None:
    text = render(RESULT, "table", time_zone("Europe/Amsterdam"))
    assert "2026-11-24T14:00:00+01:00" in text
    assert "2026-11-24T01:00:00+01:00 .. 2026-11-25T01:00:00+01:00" in text


def test_csv_keeps_exact_cents_and_fractions_and_leaves_nulls_empty() -> None:
    rows = list(csv.reader(io.StringIO(render(RESULT, "csv", time_zone("UTC")))))
    assert rows == [
        ["city", "period", "gmv_cents", "orders", "late_share", "avg_items"],
        ["Amsterdam", "2026-11-24T13:00:00+00:00", "816641500", "12370", "0.12345", "2.5"],
        ["Berlin", "", "", "0", "", ""],
    ]


def test_json_keeps_exact_cents_iso_times_and_nulls() -> None:
    records = json.loads(render(RESULT, "json", time_zone("UTC")))
    assert records == [
        {
            "city": "Amsterdam",
            "period": "2026-11-24T13:00:00+00:00",
            "gmv_cents": 816641500,
            "orders": 12370,
            "late_share": 0.12345,
            "avg_items": 2.5,
        },
        {"city": "Berlin", "period": None, "gmv_cents": None, "orders": 0, "late_share": None, "avg_items": None},
    ]
    assert isinstance(records[0]["gmv_cents"], int)


def test_a_query_without_a_window_says_none() -> None:
    active = Result("active_orders", (Column("city", "text"), Column("orders", "count")), [["Paris", 3]], None, None, 4)
    assert render(active, "table", time_zone("UTC")).splitlines()[-1] == "(1 rows; Pinot 4 ms)"
