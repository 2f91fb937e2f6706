"""The query library's joined queries (`-- join on:` and `-- rate:`), with a cursor that answers each part with
columns of its own: no service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.analytics.queries import Query, library, run_query
from pipeline.errors import QueryFailed

JOINED = """-- Tickets per 1,000 orders.
-- columns: city text, orders count, tickets count, per_1000 number
-- join on: city
-- rate: per_1000 = tickets per 1000 orders
SELECT city, SUM(orders) AS orders FROM order_ledger GROUP BY city LIMIT 10
UNION ALL
SELECT city, DISTINCTCOUNT(ticket_id) AS tickets FROM ticket_events GROUP BY city LIMIT 10
"""


class Cursor:
    """Answers each statement with the next of `answers`, (column names, rows) each."""

    def __init__(self, answers: list[tuple[list[str], list[list[Any]]]]) -> None:
        self.answers, self.statements = answers, []
        self.timeUsedMs = 2

    def execute(self, sql: str, params: dict[str, Any]) -> None:
        self.statements.append(sql)
        self.description = [(name,) for name in self.answers[len(self.statements) - 1][0]]

    def fetchall(self) -> list[list[Any]]:
        return self.answers[len(self.statements) - 1][1]


def test_a_joined_query_declares_its_key_and_rate(tmp_path: Path) -> None:
    (tmp_path / "per_1000.sql").write_text(JOINED)
    query = Query.load(tmp_path / "per_1000.sql")
    assert query.join_on == ("city",) and query.rate == ("per_1000", "tickets", 1000, "orders")
    assert query.description == "Tickets per 1,000 orders." and query.order_by == ()


def test_the_rows_of_the_parts_are_joined_on_the_key_with_the_rate_computed(tmp_path: Path) -> None:
    (tmp_path / "per_1000.sql").write_text(JOINED)
    query = Query.load(tmp_path / "per_1000.sql")
    columns = {c.name: c for c in query.columns}
    orders = ((columns["city"], columns["orders"]), [["Lisbon", 400], ["Berlin", 2000], [None, 5]])
    tickets = ((columns["city"], columns["tickets"]), [["Berlin", 64], ["Warsaw", 3]])
    assert query.join([orders, tickets]) == [
        ["Berlin", 2000, 64, 32.0],
        ["Lisbon", 400, 0, 0.0],  # no ticket: a count of 0
        ["Warsaw", 0, 3, None],  # no order: no rate
        [None, 5, 0, 0.0],  # a missing key last
    ]


def test_a_joined_query_of_the_library_runs_both_parts() -> None:
    cursor = Cursor(
        [
            (["city", "restaurant_id", "orders"], [["Berlin", "r1", 1000.0], ["Berlin", "r2", 250.0]]),
            (["city", "restaurant_id", "tickets"], [["Berlin", "r2", 5]]),
        ]
    )
    result = run_query(cursor, "tickets_per_1000_orders", since="-2h")
    assert result.rows == [["Berlin", "r1", 1000, 0, 0.0], ["Berlin", "r2", 250, 5, 20.0]]
    assert ["FROM order_ledger" in s for s in cursor.statements] == [True, False]
    assert result.broker_ms == 4


def test_a_part_answering_other_columns_fails_naming_them() -> None:
    cursor = Cursor([(["restaurant_id", "orders"], [["r1", 3]]), (["city", "restaurant_id", "tickets"], [])])
    with pytest.raises(QueryFailed, match=r"answered columns \['restaurant_id', 'orders'\]"):
        run_query(cursor, "tickets_per_1000_orders", since="-2h")


def test_a_rate_must_name_declared_columns(tmp_path: Path) -> None:
    (tmp_path / "bad.sql").write_text(JOINED.replace("per 1000 orders", "per 1000 deliveries"))
    with pytest.raises(ValueError, match="join on"):
        Query.load(tmp_path / "bad.sql")


def test_every_joined_query_of_the_library_answers_its_keys_first() -> None:
    for query in (q for q in library().values() if q.join_on):
        assert [c.name for c in query.columns][: len(query.join_on)] == list(query.join_on), query.name
