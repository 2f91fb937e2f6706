"""The query library's parameters, fuzzed (hypothesis), without Pinot: whatever text or number a caller
passes, the SQL sent to the broker has exactly the library's structure (outside string literals it is the
same text), or the library refuses the value with a clear UsageError. tests/integration/test_query_injection.py
sends the same hostile values to the real broker."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pinotdb.db import apply_parameters

from pipeline.analytics.queries import GRAINS, WINDOW_START, library, run_query
from pipeline.errors import UsageError

LITERAL = re.compile(r"'(?:[^']|'')*'")
SINCE, UNTIL = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
HOSTILE_TEXT = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "*",
            "'",
            "''",
            "x' OR '1'='1",
            "Berlin' --",
            "Berlin'; DROP TABLE orders; --",
            "/* comment */",
            "%(city)s",
            "%s",
            "\\'",
            "\x00",
            "\u2028",
            "Zürich 東京 🍕",
            "a" * 100_000,
        ]
    ),
)
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(), HOSTILE_TEXT)


class Recording:
    """A DB-API cursor that keeps the SQL pinotdb would send (a query of parts: each part, joined as in its
    file) and answers no rows (pure: no broker)."""

    def __init__(self, name: str) -> None:
        self.description = [(column.name,) for column in library()[name].columns]
        self.statements: list[str] = []
        self.computed: dict[str, Any] = {}  # what the library adds itself (the window's start)

    def execute(self, operation: str, parameters: dict[str, Any]) -> None:
        self.statements.append(apply_parameters(operation, parameters))
        self.computed |= {k: v for k, v in parameters.items() if k == WINDOW_START}

    @property
    def sent(self) -> str:
        return "\nUNION ALL\n".join(self.statements)

    def fetchall(self) -> list:
        return []


def structure(sql: str) -> str:
    return LITERAL.sub("?", sql)


def expected_structure(name: str, params: dict[str, Any]) -> str:
    """The query's SQL with every string parameter as `?` and every number as itself."""
    query = library()[name]
    values = {"since": int(SINCE.timestamp() * 1000), "until": int(UNTIL.timestamp() * 1000), "limit": 100, **params}
    rendered = query.render(values)
    return structure(
        re.sub(
            r"%\((\w+)\)s", lambda m: "?" if isinstance(values[m.group(1)], str) else str(values[m.group(1)]), rendered
        )
    )


def run(name: str, **params: Any) -> Recording:
    cursor = Recording(name)
    run_query(cursor, name, since=SINCE, until=UNTIL, **params)
    return cursor


CITY_QUERIES = sorted(name for name, query in library().items() if "city" in query.parameters)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(CITY_QUERIES), city=HOSTILE_TEXT)
def test_a_city_of_any_text_stays_one_string_literal(name: str, city: str) -> None:
    params: dict[str, Any] = {"city": city}
    if "grain" in library()[name].parameters:
        params["grain"] = "hour"
    if "lat" in library()[name].parameters:
        params |= {"lat": 52.5, "lon": 13.4, "radius_m": 1000.0}
    try:
        cursor = run(name, **params)
    except UsageError as exc:
        assert city == "*" and "city" in str(exc)  # pinotdb would send a lone * unquoted
        return
    assert structure(cursor.sent) == expected_structure(name, params | cursor.computed)
    assert "'" + city.replace("'", "''") + "'" in cursor.sent


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["lat", "lon", "radius_m"]), value=NUMBERS)
def test_coordinates_are_finite_numbers_or_refused(field: str, value: Any) -> None:
    params: dict[str, Any] = {"lat": 52.5, "lon": 13.4, "radius_m": 1000.0, field: value}
    finite = type(value) in (int, float) and math.isfinite(value)
    if not finite:
        with pytest.raises(UsageError, match=field):
            run("deliveries_within_radius", **params)
        return
    cursor = run("deliveries_within_radius", **params)
    assert structure(cursor.sent) == expected_structure("deliveries_within_radius", params | cursor.computed)


@settings(max_examples=200, deadline=None)
@given(limit=NUMBERS)
def test_a_limit_is_a_positive_integer_or_refused(limit: Any) -> None:
    if type(limit) is int and limit > 0:
        cursor = run("top_restaurants", limit=limit)
        assert cursor.sent.rstrip().endswith(f"LIMIT {limit}")
    else:
        with pytest.raises(UsageError, match="limit"):
            run("top_restaurants", limit=limit)


@settings(max_examples=100, deadline=None)
@given(grain=HOSTILE_TEXT)
def test_an_unknown_grain_is_a_usage_error_not_a_key_error(grain: str) -> None:
    name = next(name for name, query in library().items() if "grain" in query.parameters)
    if grain in GRAINS:
        run(name, grain=grain)
    else:
        with pytest.raises(UsageError, match="grain"):
            run(name, grain=grain)
