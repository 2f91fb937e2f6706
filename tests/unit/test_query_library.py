"""The query library's pure rules: declared column kinds, typed values, and one-line failures."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pandas  # the `pandas` extra, which `make setup` installs
import pinotdb.exceptions
import pytest

from pipeline.analytics.queries import (
    CONVERTERS,
    GRAINS,
    KINDS,
    Column,
    Result,
    failure,
    library,
    run_query,
    whole_hours,
)

BROKER = "http://127.0.0.1:8099"


def test_every_query_declares_a_known_kind_for_each_column() -> None:
    for query in library().values():
        assert query.columns, query.name
        assert {c.kind for c in query.columns} <= set(KINDS) == set(CONVERTERS), query.name
        assert "columns:" not in query.description, query.name


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        (1795593600000, "time", datetime(2026, 11, 25, 8, tzinfo=UTC)),
        (-(2**63), "time", None),  # Pinot's default null for a LONG time column
        (8166415.0, "money", 8166415),
        (2250.5, "money", 2250.5),  # a mean of cents
        (1370.0, "count", 1370),
        (math.nan, "ratio", None),  # an aggregate over no rows
        (-math.inf, "number", None),
        (0.25, "ratio", 0.25),
        ("null", "text", None),
        ("Amsterdam", "text", "Amsterdam"),
        (None, "count", None),
    ],
)
def test_values_come_back_as_their_kind(raw: object, kind: str, expected: object) -> None:
    value = CONVERTERS[kind](raw)
    assert value == expected and type(value) is type(expected)


def test_unreachable_broker_names_the_broker_and_its_setting() -> None:
    error = failure(httpx.ConnectError("[Errno 111] Connection refused"), [], "funnel", BROKER, 10000)
    assert str(error) == (
        "the Pinot broker at http://127.0.0.1:8099 is unreachable (ConnectError: [Errno 111] Connection refused); "
        "check that it runs and that NIBBLE_PINOT_BROKER_URL points at it"
    )
    assert error.exit_code != 0


@pytest.mark.parametrize(
    ("exc", "errors"),
    [
        (httpx.ReadTimeout("timed out"), []),
        (
            pinotdb.exceptions.DatabaseError("..."),
            [{"errorCode": 400, "message": "BrokerTimeoutError:\nQuery timed out (time spent: 1ms, timeout: 1ms)"}],
        ),
        (
            pinotdb.exceptions.DatabaseError("..."),
            [{"errorCode": 427, "message": "1 servers [127.0.0.1_R] not responded"}],
        ),
        (
            pinotdb.exceptions.DatabaseError("..."),
            [{"errorCode": 240, "message": "QuerySchedulingTimeoutError:\nQuery scheduling took 1ms (longer than"}],
        ),
        (
            pinotdb.exceptions.DatabaseError("..."),
            [{"errorCode": 200, "message": "QueryExecutionError:\nTimed out while combining group-by results"}],
        ),
    ],
)
def test_a_timeout_names_the_timeout_setting(exc: Exception, errors: list[dict]) -> None:
    assert str(failure(exc, errors, "funnel", BROKER, 5000)) == (
        "the Pinot broker at http://127.0.0.1:8099 did not answer query funnel within "
        "NIBBLE_PINOT_QUERY_TIMEOUT_MS=5000 ms; raise it or narrow the window"
    )


def test_an_unknown_column_says_which_and_how_to_fix_it() -> None:
    message = (
        "UnknownColumnError:\norg.apache.pinot.spi.exception.BadQueryRequestException: Unknown columnName "
        "'tip_cents' found in the query\n\tat org.apache.pinot.broker.requesthandler.BaseBrokerRequestHandler"
    )
    error = failure(pinotdb.exceptions.DatabaseError("..."), [{"errorCode": 710, "message": message}], "x", BROKER, 1)
    assert str(error) == (
        "the Pinot broker at http://127.0.0.1:8099 refused query x: Unknown columnName 'tip_cents' found in the "
        "query; the tables it serves differ from pinot/ (run `nibble pinot apply`, or point NIBBLE_PINOT_BROKER_URL "
        "at this pipeline's Pinot)"
    )
    assert "\n" not in str(error)


def test_to_pandas_types_times_and_counts() -> None:
    result = Result(
        "gmv_by_city",
        (Column("city", "text"), Column("period", "time"), Column("gmv_cents", "money"), Column("orders", "count")),
        [["Paris", datetime(2026, 11, 24, 13, tzinfo=UTC), 259900, 100], ["Rome", None, None, None]],
        None,
        None,
        3,
    )
    frame = result.to_pandas()
    assert list(frame.columns) == ["city", "period", "gmv_cents", "orders"]
    assert isinstance(frame["period"].dtype, pandas.DatetimeTZDtype) and str(frame["period"].dt.tz) == "UTC"
    assert frame["orders"].dtype == pandas.Int64Dtype()
    assert frame["period"].iloc[0] == pandas.Timestamp("2026-11-24T13:00:00Z")
    assert frame["orders"].isna().iloc[1]


# The queries over the order ledger (docs/queries.md).
LEDGER_QUERIES = {
    "average_basket",
    "cancellation_rate",
    "gmv_by_city",
    "gmv_by_cuisine",
    "gmv_by_restaurant",
    "tickets_per_1000_orders",
    "top_restaurants",
}


class Recording:
    """A DB-API cursor that keeps what it was asked and answers no rows."""

    def __init__(self, name: str) -> None:
        self.description = [(column.name,) for column in library()[name].columns]

    def execute(self, operation: str, parameters: dict[str, Any]) -> None:
        self.sql, self.parameters = operation, parameters

    def fetchall(self) -> list:
        return []


def at(hour: int, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    return datetime(2026, 11, 25, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (at(10, 17, 37, 500), at(13, 17, 37), (at(10), at(14))),
        (at(10), at(14), (at(10), at(14))),  # already whole: unchanged
        (at(10, 59, 59, 999999), at(11, 0, 0, 1), (at(10), at(12))),
        (at(23, 30), at(23, 45), (at(23), at(23) + timedelta(hours=1))),  # across midnight
        # In a zone half an hour off UTC: whole UTC hours (Pinot's dateTrunc), reported in UTC.
        (
            datetime(2026, 11, 25, 15, 45, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            datetime(2026, 11, 25, 16, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            (at(10), at(11)),
        ),
    ],
)
def test_whole_hours_lowers_since_and_raises_until(since: datetime, until: datetime, expected: tuple) -> None:
    assert whole_hours(since, until) == expected
    assert all(moment.tzinfo is UTC for moment in whole_hours(since, until))


def test_the_queries_over_the_ledger_declare_whole_hours() -> None:
    # orders_per_minute reads the ledger too, by the millisecond: only before the window, per minute.
    readers = {name for name, query in library().items() if "FROM order_ledger" in query.sql}
    assert readers == LEDGER_QUERIES | {"orders_per_minute"}
    assert all(library()[name].whole_hours for name in LEDGER_QUERIES)
    for query in library().values():
        assert "window: whole hours" not in query.description, query.name


def test_a_ledger_query_answers_over_whole_hours_and_reports_the_window_it_used() -> None:
    cursor = Recording("top_restaurants")
    result = run_query(cursor, "top_restaurants", since=at(10, 17, 37, 500), until=at(13, 17, 37))
    assert (result.since, result.until) == (at(10), at(14))
    assert cursor.parameters == {"since": 1795600800000, "until": 1795615200000, "limit": 100}
    assert "placed_hour >= %(since)s AND placed_hour < %(until)s" in cursor.sql


def test_any_other_query_keeps_the_window_to_the_millisecond() -> None:
    cursor = Recording("orders_per_minute")
    result = run_query(cursor, "orders_per_minute", since=at(10, 17, 37, 500), until=at(13, 17, 37))
    assert (result.since, result.until) == (at(10, 17, 37, 500), at(13, 17, 37))
    assert cursor.parameters["since"] == int(at(10, 17, 37, 500).timestamp() * 1000)


@pytest.mark.parametrize(("grain", "column"), [("hour", "placed_hour"), ("day", "placed_day")])
def test_the_grain_names_the_period_column_from_a_fixed_mapping(grain: str, column: str) -> None:
    assert GRAINS[grain] == column
    for name in ("gmv_by_city", "gmv_by_cuisine", "gmv_by_restaurant"):
        query = library()[name]
        assert "grain" in query.parameters
        sql = query.render({"grain": grain})
        assert f"{column} AS period" in sql and "GROUP BY" in sql and "GRAIN_COLUMN" not in sql
        assert sql.split("GROUP BY", 1)[1].count(column) == 2  # grouped and ordered by it
        assert "placed_hour >= %(since)s" in sql  # the window is whole hours at any grain
