"""The support-ticket queries of the library against answers computed from PostgreSQL (the other queries'
checks are in exactness.py; tests/e2e/test_end_to_end.py and test_backfill.py run both, and
tests/e2e/test_ticket_queries.py runs these on tickets still open), and what a test waits for before it
compares them (tickets_ingested).

A ticket's city and restaurant are its order's (a ticket about no order has neither, so no scope holds it);
first_response_at is its first comment neither internal nor by its own user. Times are truncated to the
millisecond, as the Avro payload carries them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pipeline.analytics.queries import whole_hours
from tests.support.exactness import Ingested, _pinot_percentile, q

TICKETS = """
    SELECT t.*, o.city, o.restaurant_id,
           (SELECT min(c.created_at) FROM admin_service.ticket_comments c
            WHERE c.ticket_id = t.id AND NOT coalesce(c.is_internal, false) AND c.user_id <> t.user_id)
               AS first_response_at
    FROM admin_service.support_tickets t JOIN order_service.orders o ON o.id = t.order_id
"""


def _ms(column: str) -> str:
    return f"(extract(epoch FROM date_trunc('milliseconds', {column})) * 1000)::bigint"


def _open_by_age(ingested: Ingested, city: str, now: datetime) -> list[tuple]:
    return ingested.pg(
        f"SELECT priority, CASE WHEN %s - created_at < interval '1 hour' THEN 'under 1 h' "
        "WHEN %s - created_at < interval '4 hours' THEN '1-4 h' "
        "WHEN %s - created_at < interval '24 hours' THEN '4-24 h' ELSE 'over 24 h' END, "
        f"count(*), {_ms('min(created_at)')} FROM ({TICKETS}) t "
        "WHERE city = %s AND status IN ('open', 'in_progress') GROUP BY 1, 2 ORDER BY 1, max(created_at) DESC",
        now,
        now,
        now,
        city,
    )


def check_open_tickets(ingested: Ingested) -> None:
    """Ages are as of Pinot's now(): PostgreSQL's answer just before or just after the query must match."""
    for city in ingested.cities:
        before = datetime.now(UTC)
        rows = [tuple(row) for row in q(ingested, "open_tickets", city=city)]
        after = datetime.now(UTC)
        assert rows in (_open_by_age(ingested, city, before), _open_by_age(ingested, city, after)), city


def _resolved_since(ingested: Ingested) -> datetime:
    """The percentiles read each ticket's TicketResolved event: on a backfilled database, only tickets resolved
    since the installation have one."""
    return ingested.history_since or datetime.min.replace(tzinfo=UTC)


def check_ticket_response_times(ingested: Ingested) -> None:
    city = ingested.cities[0]
    durations: dict[tuple[str, str], list[int]] = {}
    for priority, first_ms, resolved_ms in ingested.pg(
        f"SELECT priority, {_ms('first_response_at')} - {_ms('created_at')}, "
        f"{_ms('resolved_at')} - {_ms('created_at')} FROM ({TICKETS}) t "
        "WHERE city = %s AND resolved_at >= %s AND resolved_at >= %s AND resolved_at < %s",
        city,
        _resolved_since(ingested),
        ingested.since,
        ingested.until,
    ):
        durations.setdefault((priority, "resolution"), []).append(resolved_ms)
        if first_ms is not None:
            durations.setdefault((priority, "first_response"), []).append(first_ms)
    rows = q(ingested, "ticket_response_times", city=city)
    assert [tuple(row[:2]) for row in rows] == sorted(durations)
    for priority, measure, tickets, p50, p90 in rows:
        values = durations[priority, measure]
        assert tickets == len(values)
        assert p50 == pytest.approx(_pinot_percentile(values, 50) / 60000)
        assert p90 == pytest.approx(_pinot_percentile(values, 90) / 60000)


def check_tickets_per_1000_orders(ingested: Ingested) -> None:
    city = ingested.cities[1]
    since, until = whole_hours(ingested.since, ingested.until)  # as the library widens it
    orders = dict(
        ingested.pg(
            "SELECT restaurant_id::text, count(*) FROM order_service.orders o "
            "WHERE city = %s AND order_service.is_visible(o) AND placed_at >= %s AND placed_at < %s GROUP BY 1",
            city,
            since,
            until,
        )
    )
    tickets = dict(
        ingested.pg(
            f"SELECT restaurant_id::text, count(*) FROM ({TICKETS}) t "
            "WHERE city = %s AND created_at >= %s AND created_at < %s GROUP BY 1",
            city,
            since,
            until,
        )
    )
    assert tickets, "the scope has tickets"
    rows = q(ingested, "tickets_per_1000_orders", city=city)
    assert {rid: (n, t) for _, rid, n, t, _ in rows} == {
        rid: (orders.get(rid, 0), tickets.get(rid, 0)) for rid in orders.keys() | tickets.keys()
    }
    for _, _, n, t, rate in rows:
        assert rate == (pytest.approx(1000 * t / n) if n else None)


def check_oldest_unanswered_tickets(ingested: Ingested) -> None:
    for city in ingested.cities:
        truth = ingested.pg(
            f"SELECT id::text, priority, status, city, assigned_to::text, {_ms('created_at')}, "
            "(SELECT count(*) FROM admin_service.ticket_comments c WHERE c.ticket_id = t.id) "
            f"FROM ({TICKETS}) t WHERE city = %s AND status IN ('open', 'in_progress') "
            "AND first_response_at IS NULL ORDER BY created_at, id LIMIT 20",
            city,
        )
        rows = q(ingested, "oldest_unanswered_tickets", city=city, limit=20)
        assert [tuple(row) for row in rows] == [tuple(row) for row in truth], city


# --- what a test waits for ------------------------------------------------------------------------------

_TICKET_STATE = (
    "SELECT t.id::text, t.status, t.priority, (SELECT count(*) FROM admin_service.ticket_comments c "
    "WHERE c.ticket_id = t.id) FROM admin_service.support_tickets t JOIN order_service.orders o ON o.id = t.order_id "
    "WHERE o.city = ANY(%s)"
)


def tickets_ingested(scope: Ingested) -> bool:
    """Pinot's current state of every ticket of the scope equals PostgreSQL's, and each resolution has its
    TicketResolved event."""
    truth = {row[0]: tuple(row[1:]) for row in scope.pg(_TICKET_STATE, scope.cities)}
    state = {
        ticket: (status, priority, int(comments))
        for ticket, status, priority, comments in scope.pinot_rows(
            "SELECT ticket_id, status, priority, comment_count FROM support_tickets "
            f"WHERE city IN ({scope.city_list}) LIMIT 100000"
        )
    }
    (resolved,) = scope.pg(
        "SELECT count(*) FROM admin_service.support_tickets t JOIN order_service.orders o ON o.id = t.order_id "
        "WHERE o.city = ANY(%s) AND t.resolved_at IS NOT NULL",
        scope.cities,
    )[0]
    events = scope.pinot_rows(
        f"SELECT COUNT(*) FROM ticket_events WHERE event_type = 'TicketResolved' AND city IN ({scope.city_list})"
    )
    return state == truth and int(events[0][0]) == resolved


TICKET_QUERY_CHECKS: dict[str, Callable[[Ingested], None]] = {
    "open_tickets": check_open_tickets,
    "ticket_response_times": check_ticket_response_times,
    "tickets_per_1000_orders": check_tickets_per_1000_orders,
    "oldest_unanswered_tickets": check_oldest_unanswered_tickets,
}
