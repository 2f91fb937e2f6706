"""The query library's queries of two parts (UNION ALL) and its table prefix, with a cursor that records what
it is asked: no service."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.analytics.queries import Query, library, run_query, window_start
from pipeline.config import load_settings

UNION = """-- Orders by status.
-- columns: minute time, status text, orders count
-- order by: minute, status
SELECT placed_minute AS minute, status, COUNT(*) AS orders FROM orders WHERE placed_at >= %(since)s
  AND city = %(city)s -- if city
GROUP BY placed_minute, status LIMIT 10
UNION ALL
SELECT placed_minute AS minute, status, COUNT(*) AS orders FROM order_events WHERE placed_at >= %(since)s
GROUP BY placed_minute, status LIMIT 10
"""


class Cursor:
    """Answers each statement with the next of `answers`; keeps the statements."""

    def __init__(self, answers: list[list[list[Any]]], columns: list[str]) -> None:
        self.answers, self.statements, self.parameters = answers, [], []
        self.description = [(name,) for name in columns]
        self.timeUsedMs = 3

    def execute(self, sql: str, params: dict[str, Any]) -> None:
        self.statements.append(sql)
        self.parameters.append(params)

    def fetchall(self) -> list[list[Any]]:
        return self.answers[len(self.statements) - 1]


def test_a_query_of_two_parts_runs_each_and_merges_their_rows_in_the_declared_order(tmp_path: Path) -> None:
    (tmp_path / "by_status.sql").write_text(UNION)
    query = Query.load(tmp_path / "by_status.sql")
    assert query.order_by == ("minute", "status") and query.description == "Orders by status."
    parts = query.parts(query.render({"city": None, "since": 0}))
    assert len(parts) == 2 and "FROM orders" in parts[0] and "FROM order_events" in parts[1]
    assert all("city" not in part for part in parts)
    minute = 1_796_000_000_000
    rows = [
        [minute + 60_000, "placed", 2],
        [minute, "confirmed", 1],
        [minute, "delivered", 4],
        [minute, "cancelled", 1],
    ]
    merged = query.merge([[datetime.fromtimestamp(m / 1000, UTC), s, n] for m, s, n in rows], limit=None)
    assert [(row[0].timestamp() * 1000, row[1]) for row in merged] == [
        (minute, "cancelled"),
        (minute, "confirmed"),
        (minute, "delivered"),
        (minute + 60_000, "placed"),
    ]
    assert len(query.merge(merged, limit=2)) == 2


def test_a_query_of_parts_must_say_how_its_rows_are_ordered(tmp_path: Path) -> None:
    (tmp_path / "bad.sql").write_text(UNION.replace("-- order by: minute, status\n", ""))
    with pytest.raises(ValueError, match="order by"):
        Query.load(tmp_path / "bad.sql")


def test_the_library_runs_the_parts_of_orders_per_minute_and_sums_their_broker_time() -> None:
    minute = 1_796_000_000_000
    answers = [[[minute, "placed", 1]], [[minute - 60_000, "cancelled", 3]], [[minute, "delivered", 2]]]
    cursor = Cursor(answers, ["minute", "status", "orders"])
    result = run_query(cursor, "orders_per_minute", since="-1h")
    assert [row[1:] for row in result.rows] == [["cancelled", 3], ["delivered", 2], ["placed", 1]]
    assert result.broker_ms == 9
    assert [("FROM orders" in s, "FROM order_ledger" in s) for s in cursor.statements] == [
        (True, False),
        (False, True),
        (False, True),
    ]


def test_the_state_tables_window_starts_on_the_next_whole_minute_after_now_minus_the_window() -> None:
    settings = load_settings()
    settings = settings.model_copy(update={"pinot": settings.pinot.model_copy(update={"realtime_window": "2d"})})
    assert window_start(datetime(2026, 5, 3, 10, 17, 37, 500, UTC), settings) == datetime(
        2026, 5, 1, 10, 18, tzinfo=UTC
    )
    assert window_start(datetime(2026, 5, 3, 10, 17, tzinfo=UTC), settings) == datetime(2026, 5, 1, 10, 17, tzinfo=UTC)


def test_orders_per_minute_splits_at_the_window_start_the_library_computes() -> None:
    cursor = Cursor([[], [], []], ["minute", "status", "orders"])
    before = window_start(datetime.now(UTC), load_settings())
    run_query(cursor, "orders_per_minute", since="-7d")
    after = window_start(datetime.now(UTC), load_settings())
    starts = {params["window_start"] for params in cursor.parameters}
    assert len(starts) == 1 and before.timestamp() * 1000 <= starts.pop() <= after.timestamp() * 1000


def test_the_table_prefix_names_a_test_s_own_tables() -> None:
    settings = load_settings()
    settings = settings.model_copy(update={"pinot": settings.pinot.model_copy(update={"table_prefix": "t9_"})})
    cursor = Cursor([[]], ["stage", "orders"])
    run_query(cursor, "funnel", settings=settings)
    assert "FROM t9_order_events" in cursor.statements[0]


def test_every_query_of_parts_declares_its_order_or_its_join() -> None:
    for query in library().values():
        assert ("UNION ALL" in query.sql) == bool(query.order_by or query.join_on), query.name
