"""The query library's pure rules: declared column kinds, typed values, and one-line failures."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import httpx
import pandas  # the `pandas` extra, which `make setup` installs
import pinotdb.exceptions
import pytest

from pipeline.analytics.queries import CONVERTERS, KINDS, Column, Result, failure, library

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
