"""The query library's parameters against the real broker: hostile text (quotes, comments, SQL, unicode,
long strings) is one string literal, so it matches no city and the answer is empty; values pinotdb would
paste unquoted are refused before anything is sent. Never an injection, never a traceback."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.pinot import broker_connection
from pipeline.analytics.queries import library, run_query
from pipeline.analytics.tables import apply
from pipeline.errors import NibbleError, UsageError
from tests.support.services import Services

HOSTILE = [
    "x' OR '1'='1",
    "Berlin' --",
    "Berlin'; DROP TABLE orders; --",
    "' UNION SELECT * FROM orders --",
    "/* */ Berlin",
    "\\' OR 1=1 --",
    "%(city)s",
    "Zürich 東京 🍕",
    "\u2028Berlin",
    "a" * 100_000,
]
CITY_QUERIES = sorted(name for name, query in library().items() if "city" in query.parameters)


def params_for(name: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    parameters = library()[name].parameters
    if "grain" in parameters:
        params["grain"] = "hour"
    if "lat" in parameters:
        params |= {"lat": 52.52, "lon": 13.40, "radius_m": 2000.0}
    return params | extra


@pytest.fixture(scope="module")
def cursor(services: Services) -> Any:
    apply(services.settings())
    return broker_connection(services.pinot_broker_url).cursor()


@pytest.mark.parametrize("name", CITY_QUERIES)
def test_hostile_city_text_is_one_literal_that_matches_nothing(cursor: Any, name: str) -> None:
    for city in HOSTILE:
        try:
            result = run_query(cursor, name, **params_for(name, city=city))
        except NibbleError as exc:  # the broker may refuse a 100,000-character literal: clearly, on one line
            assert "\n" not in str(exc) and "Traceback" not in str(exc), str(exc)[:300]
            continue
        assert result.rows == [], f"{name} with city {city[:40]!r} answered rows"


@pytest.mark.parametrize(
    "bad",
    [{"city": "*"}, {"city": ["a", "b"]}, {"limit": "1; DROP"}, {"limit": 0}, {"lat": float("nan")}, {"lon": True}],
    ids=str,
)
def test_values_pinotdb_would_paste_unquoted_are_refused(cursor: Any, bad: dict[str, Any]) -> None:
    name = "deliveries_within_radius"
    with pytest.raises(UsageError):
        run_query(cursor, name, **params_for(name, **bad))
