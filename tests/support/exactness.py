"""Pinot equals PostgreSQL: the comparisons every exactness test makes (end to end, faults, backfill).

An `Ingested` scope is a database plus the cities its data lives in (a random suffix keeps them apart from
everything else the shared tables hold); every comparison is restricted to those cities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline.analytics.queries import run_query
from pipeline.devstack.generator import CITIES


@dataclass(frozen=True)
class Ingested:
    db: str
    cities: list[str]
    since: datetime
    until: datetime
    pinot: Any  # a pinotdb cursor
    # On a backfilled database Pinot's event history starts when the pipeline was installed.
    history_since: datetime | None = None

    def pg(self, query: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.db) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            return conn.execute(query, params).fetchall()

    def pinot_rows(self, query: str, **params: Any) -> list[list]:
        self.pinot.execute(query, params)
        return [list(row) for row in self.pinot.fetchall()]

    @property
    def city_list(self) -> str:
        """The module's cities as a Pinot IN list (fixed test data, not user input)."""
        return ", ".join(f"'{city}'" for city in self.cities)


def outbox_counts(db: str, cities: list[str]) -> tuple[int, int]:
    """The order events and delivery events the outboxes hold for `cities` (the order ledger's entries aside)."""
    with psycopg.connect(db) as conn:
        orders = conn.execute(
            "SELECT count(*) FROM order_service.outbox WHERE aggregate_type = 'order' AND payload->>'city' = ANY(%s)",
            (cities,),
        ).fetchone()[0]
        deliveries = conn.execute(
            "SELECT count(*) FROM driver_service.outbox "
            "WHERE aggregate_type = 'delivery' AND payload->>'city' = ANY(%s)",
            (cities,),
        ).fetchone()[0]
    return orders, deliveries


def backlog(db: str) -> int:
    """Outbox rows waiting, of every stream (the order ledger's included)."""
    with psycopg.connect(db) as conn:
        return sum(
            conn.execute(sql.SQL("SELECT count(*) FROM {}.outbox").format(sql.Identifier(s))).fetchone()[0]
            for s in ("order_service", "driver_service", "restaurant_service")
        )


# --- Pinot equals PostgreSQL ----------------------------------------------------------------------------


def ledger_ingested(ingested: Ingested) -> bool:
    """Pinot's order ledger sums, per city, to PostgreSQL's visible orders (count, cancelled, GMV, items): the
    library's order queries read the ledger, which Pinot ingests from a topic of its own, so a test waits for
    this as well as for the order events before it compares their answers."""
    truth = ingested.pg(
        "SELECT city, count(*), count(*) FILTER (WHERE status = 'cancelled'), "
        "coalesce(sum(total * 100) FILTER (WHERE status <> 'cancelled'), 0)::bigint, "
        "coalesce(sum(item_count) FILTER (WHERE status <> 'cancelled'), 0) "
        "FROM order_service.orders WHERE city = ANY(%s) AND (announced OR item_count > 0) GROUP BY 1 ORDER BY 1",
        ingested.cities,
    )
    pinot = ingested.pinot_rows(
        f"SELECT city, SUM(orders), SUM(cancelled), SUM(gmv_cents), SUM(items) FROM order_ledger "
        f"WHERE city IN ({ingested.city_list}) GROUP BY city ORDER BY city LIMIT 1000"
    )
    return [(city, *(int(value) for value in sums)) for city, *sums in pinot] == [tuple(row) for row in truth]


def assert_orders_equal(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, status, count(*), sum(total * 100)::bigint FROM order_service.orders "
        "WHERE city = ANY(%s) GROUP BY 1, 2 ORDER BY 1, 2",
        ingested.cities,
    )
    pinot = ingested.pinot_rows(
        f"SELECT city, status, COUNT(*), SUM(total_cents) FROM orders WHERE city IN ({ingested.city_list}) "
        "GROUP BY city, status ORDER BY city, status LIMIT 1000"
    )
    assert [(c, s, n, int(g)) for c, s, n, g in pinot] == [tuple(row) for row in truth]
    assert {status for _, status, _, _ in truth} >= {"delivered", "cancelled"}


def assert_deliveries_equal(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, status, count(*) FROM driver_service.deliveries WHERE city = ANY(%s) GROUP BY 1, 2 ORDER BY 1, 2",
        ingested.cities,
    )
    pinot = ingested.pinot_rows(
        f"SELECT city, status, COUNT(*) FROM deliveries WHERE city IN ({ingested.city_list}) "
        "GROUP BY city, status ORDER BY city, status LIMIT 1000"
    )
    assert [tuple(row) for row in pinot] == [tuple(row) for row in truth]


def assert_order_history_counted_once(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT to_status, count(*) FROM order_service.order_status_history h "
        "JOIN order_service.orders o ON o.id = h.order_id WHERE o.city = ANY(%s) AND h.from_status IS NOT NULL "
        "GROUP BY 1 ORDER BY 1",
        ingested.cities,
    )
    pinot = ingested.pinot_rows(
        f"SELECT status, COUNT(*) FROM order_events WHERE city IN ({ingested.city_list}) "
        "AND event_type IN ('OrderStatusChanged', 'OrderCancelled') GROUP BY status ORDER BY status LIMIT 100"
    )
    assert [tuple(row) for row in pinot] == [tuple(row) for row in truth]


# --- the query library against PostgreSQL ---------------------------------------------------------------


def q(ingested: Ingested, name: str, **params: Any) -> list[list]:
    """The library's rows, its times back in epoch milliseconds as the PostgreSQL side computes them."""
    params.setdefault("since", ingested.since)
    params.setdefault("until", ingested.until)
    rows = run_query(ingested.pinot, name, **params).rows
    return [[round(v.timestamp() * 1000) if isinstance(v, datetime) else v for v in row] for row in rows]


def check_orders_per_minute(ingested: Ingested) -> None:
    city = ingested.cities[0]
    truth = ingested.pg(
        "SELECT (extract(epoch FROM date_trunc('minute', placed_at)) * 1000)::bigint, status, count(*) "
        "FROM order_service.orders WHERE city = %s GROUP BY 1, 2 ORDER BY 1, 2",
        city,
    )
    assert [tuple(row) for row in q(ingested, "orders_per_minute", city=city)] == [tuple(r) for r in truth]


def _check_gmv(ingested: Ingested, name: str, column: str, grain: str) -> None:
    city = ingested.cities[1]
    truth = ingested.pg(
        sql.SQL(
            "SELECT {col}::text, (extract(epoch FROM date_trunc(%s, placed_at)) * 1000)::bigint, "
            "sum(total * 100)::bigint, count(*) FROM order_service.orders "
            "WHERE city = %s AND status <> 'cancelled' GROUP BY 1, 2"
        )
        .format(col=sql.Identifier(column))
        .as_string(),
        grain,
        city,
    )
    rows = q(ingested, name, city=city, grain=grain)
    assert sorted((row[0], row[-3], int(row[-2]), row[-1]) for row in rows) == sorted(tuple(r) for r in truth)


def check_gmv_by_city(ingested: Ingested) -> None:
    _check_gmv(ingested, "gmv_by_city", "city", "hour")


def check_gmv_by_cuisine(ingested: Ingested) -> None:
    _check_gmv(ingested, "gmv_by_cuisine", "cuisine", "day")


def check_gmv_by_restaurant(ingested: Ingested) -> None:
    _check_gmv(ingested, "gmv_by_restaurant", "restaurant_id", "hour")


def check_average_basket(ingested: Ingested) -> None:
    truth = dict(
        (city, (float(subtotal), float(items), n))
        for city, subtotal, items, n in ingested.pg(
            "SELECT city, avg(subtotal * 100), avg(item_count), count(*) FROM order_service.orders "
            "WHERE city = ANY(%s) AND status <> 'cancelled' GROUP BY 1",
            ingested.cities,
        )
    )
    for city in ingested.cities:
        [[name, subtotal, items, n]] = q(ingested, "average_basket", city=city)
        assert name == city and n == truth[city][2]
        assert subtotal == pytest.approx(truth[city][0], rel=1e-9)
        assert items == pytest.approx(truth[city][1], rel=1e-9)


def check_cancellation_rate(ingested: Ingested) -> None:
    city = ingested.cities[2]
    truth = {
        str(rid): (n, cancelled)
        for rid, n, cancelled in ingested.pg(
            "SELECT restaurant_id, count(*), count(*) FILTER (WHERE status = 'cancelled') "
            "FROM order_service.orders WHERE city = %s GROUP BY 1",
            city,
        )
    }
    rows = q(ingested, "cancellation_rate", city=city)
    assert {rid: (n, int(c)) for rid, _, n, c, _ in rows} == truth
    rates = [rate for *_, rate in rows]
    assert rates == sorted(rates, reverse=True)
    assert all(rate == pytest.approx(c / n) for _, _, n, c, rate in rows)


def _pinot_percentile(values: list[int], percentile: int) -> float:
    """Pinot's exact PERCENTILE: the value at index size * p / 100 (integer division) of the sorted values."""
    ordered = sorted(values)
    return float(ordered[min(len(ordered) * percentile // 100, len(ordered) - 1)])


def check_delivery_time_percentiles(ingested: Ingested) -> None:
    city = ingested.cities[0]
    durations: dict[int, list[int]] = {}
    for hour, ms in ingested.pg(
        "SELECT (extract(epoch FROM date_trunc('hour', delivered_at)) * 1000)::bigint, "
        "(extract(epoch FROM delivered_at - created_at) * 1000)::bigint FROM driver_service.deliveries "
        "WHERE city = %s AND status = 'delivered'",
        city,
    ):
        durations.setdefault(hour, []).append(ms)
    rows = q(ingested, "delivery_time_percentiles", city=city)
    assert [row[1] for row in rows] == sorted(durations)
    for _, hour, n, p50, p90, p99 in rows:
        assert n == len(durations[hour])
        for got, percentile in ((p50, 50), (p90, 90), (p99, 99)):
            assert got == pytest.approx(_pinot_percentile(durations[hour], percentile) / 60000)


def check_late_deliveries(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, count(*), count(*) FILTER (WHERE delivered_at > promised_at) FROM driver_service.deliveries "
        "WHERE city = ANY(%s) AND status = 'delivered' GROUP BY 1 ORDER BY 1",
        ingested.cities,
    )
    got = [(c, n, int(late)) for city in ingested.cities for c, n, late, _ in q(ingested, "late_deliveries", city=city)]
    assert sorted(got) == [tuple(row) for row in truth]


def check_active_orders(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, status, count(*) FROM order_service.orders WHERE city = ANY(%s) "
        "AND status NOT IN ('delivered', 'cancelled') GROUP BY 1, 2 ORDER BY 1, 2",
        ingested.cities,
    )
    assert truth, "the fixture leaves some orders under way"
    got = [tuple(row) for city in ingested.cities for row in q(ingested, "active_orders", city=city)]
    assert sorted(got) == [tuple(row) for row in truth]


def check_active_deliveries(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, status, count(*) FROM driver_service.deliveries WHERE city = ANY(%s) "
        "AND status IN ('pending', 'assigned', 'picked_up') GROUP BY 1, 2 ORDER BY 1, 2",
        ingested.cities,
    )
    got = [tuple(row) for city in ingested.cities for row in q(ingested, "active_deliveries", city=city)]
    assert sorted(got) == [tuple(row) for row in truth]


def check_driver_utilisation(ingested: Ingested) -> None:
    city = ingested.cities[3]
    truth = {
        str(driver): (n, int(busy_ms))
        for driver, n, busy_ms in ingested.pg(
            # Avro carries milliseconds: truncate PostgreSQL's microseconds the same way.
            "SELECT driver_id, count(*), sum(extract(epoch FROM date_trunc('milliseconds', delivered_at) "
            "- date_trunc('milliseconds', assigned_at)) * 1000) "
            "FROM driver_service.deliveries WHERE city = %s AND status = 'delivered' GROUP BY 1",
            city,
        )
    }
    rows = q(ingested, "driver_utilisation", city=city)
    window_ms = (ingested.until - ingested.since).total_seconds() * 1000
    assert {driver: (n, round(busy_min * 60000)) for driver, _, n, busy_min, _ in rows} == truth
    assert all(share == pytest.approx(busy_min * 60000 / window_ms, rel=1e-3) for *_, busy_min, share in rows)


def check_top_restaurants(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT restaurant_id::text, sum(total * 100)::bigint, count(*) FROM order_service.orders "
        "WHERE city = ANY(%s) AND status <> 'cancelled' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        ingested.cities,
    )
    rows = [row for city in ingested.cities for row in q(ingested, "top_restaurants", city=city, limit=5)]
    best = sorted(((rid, int(gmv), n) for rid, _, _, gmv, n in rows), key=lambda r: (-r[1], r[0]))[:5]
    assert best == [tuple(row) for row in truth]


def check_deliveries_within_radius(ingested: Ingested) -> None:
    city = ingested.cities[0]
    lat, lon = CITIES[city.rsplit("-", 1)[0]]
    radius = 2000.0
    distances = {
        str(delivery): metres
        for delivery, metres in ingested.pg(
            "SELECT id, ST_Distance(dropoff_location, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, false) "
            "FROM driver_service.deliveries WHERE city = %s",
            lon,
            lat,
            city,
        )
    }
    rows = q(ingested, "deliveries_within_radius", city=city, lat=lat, lon=lon, radius_m=radius, limit=10000)
    inside = {row[0] for row in rows}
    clear_of_boundary = {d for d, m in distances.items() if abs(m - radius) > radius * 0.01}
    assert inside & clear_of_boundary == {d for d in clear_of_boundary if distances[d] < radius}
    assert [row[-1] for row in rows] == sorted(row[-1] for row in rows)
    assert len(inside) > 0


def check_funnel(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT h.to_status, count(*) FROM order_service.order_status_history h "
        "JOIN order_service.orders o ON o.id = h.order_id WHERE o.city = %s AND h.changed_at >= %s "
        "AND h.to_status IN ('placed', 'confirmed', 'picked_up', 'delivered') GROUP BY 1",
        ingested.cities[1],
        ingested.history_since or datetime.min.replace(tzinfo=UTC),
    )
    rows = q(ingested, "funnel", city=ingested.cities[1])
    assert sorted(tuple(row) for row in rows) == sorted(tuple(row) for row in truth)
    stages = dict(truth)
    if ingested.history_since is None:
        assert stages["placed"] >= stages["confirmed"] >= stages["picked_up"] >= stages["delivered"] > 0
    else:  # only the steps taken since: snapshots are not steps
        assert stages


# Each library query, checked against the answer computed from PostgreSQL.
QUERY_CHECKS: dict[str, Callable[[Ingested], None]] = {
    "orders_per_minute": check_orders_per_minute,
    "gmv_by_city": check_gmv_by_city,
    "gmv_by_cuisine": check_gmv_by_cuisine,
    "gmv_by_restaurant": check_gmv_by_restaurant,
    "average_basket": check_average_basket,
    "cancellation_rate": check_cancellation_rate,
    "delivery_time_percentiles": check_delivery_time_percentiles,
    "late_deliveries": check_late_deliveries,
    "active_orders": check_active_orders,
    "active_deliveries": check_active_deliveries,
    "driver_utilisation": check_driver_utilisation,
    "top_restaurants": check_top_restaurants,
    "deliveries_within_radius": check_deliveries_within_radius,
    "funnel": check_funnel,
}
