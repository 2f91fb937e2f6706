"""The query library's joined queries (`-- join on:` and `-- rate:`): no service."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.analytics.queries import Query

JOINED = """-- Tickets per 1,000 orders.
-- columns: city text, orders count, tickets count, per_1000 number
-- join on: city
-- rate: per_1000 = tickets per 1000 orders
SELECT city, SUM(orders) AS orders FROM order_ledger GROUP BY city LIMIT 10
UNION ALL
SELECT city, DISTINCTCOUNT(ticket_id) AS tickets FROM ticket_events GROUP BY city LIMIT 10
"""


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


def test_a_rate_must_name_declared_columns(tmp_path: Path) -> None:
    (tmp_path / "bad.sql").write_text(JOINED.replace("per 1000 orders", "per 1000 deliveries"))
    with pytest.raises(ValueError, match="join on"):
        Query.load(tmp_path / "bad.sql")
