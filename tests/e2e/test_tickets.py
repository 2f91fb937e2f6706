"""Support tickets end to end on the real stack: tickets and comments written with SQL, as the generator writes
them -> admin_service's outbox triggers (and a backfill's snapshots) -> relay (killed with -9 mid-drain,
restarted) -> Kafka -> Pinot's `support_tickets` (upsert) and `ticket_events` (dedup). Pinot must equal
PostgreSQL: every ticket row for row and every committed event exactly once (tests/support/exactness.py),
tickets about no order included.

The tables and topics are the stack's own; this module's tickets are about orders in cities of its own (a
random suffix), and its tickets about no order are compared by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.pinot import broker_connection
from pipeline.contract import catalog
from pipeline.contract.codec import Codec
from pipeline.outbox.backfill import Backfill
from tests.support.exactness import Comparison, Ingested, await_pinot, backlog, recorded_run
from tests.support.load import end_offsets, event_ids
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.resend import kill_mid_batch, send_waiting_events
from tests.support.services import Services

ORDERS = 1200  # one ticket each
NO_ORDER = 40  # tickets about the account
BATCH = 200
FORCED_RESENDS = 10
TOPIC = Codec().streams["ticket"].topic
TICKET_TABLES = catalog.load()["ticket"].pinot_tables  # compared alone: other streams' health is not this test's

# The lifecycle, one statement per step over a share of the tickets (as the generator writes it: each
# statement names one service's tables only). %(agents)s: the agents' ids.
BEFORE_THE_RELAY = (
    "INSERT INTO admin_service.ticket_comments (ticket_id, user_id, comment) "
    "SELECT id, user_id, 'Where is my food?' FROM admin_service.support_tickets WHERE random() < 0.8",
    "UPDATE admin_service.support_tickets SET assigned_to = (%(agents)s::uuid[])[1 + floor(random() * 5)::int] "
    "WHERE random() < 0.9",
    "INSERT INTO admin_service.ticket_comments (ticket_id, user_id, comment, is_internal) "
    "SELECT id, assigned_to, 'Checking with the restaurant', true FROM admin_service.support_tickets "
    "WHERE assigned_to IS NOT NULL AND random() < 0.3",
    "UPDATE admin_service.support_tickets SET priority = 'urgent' WHERE random() < 0.2",
    "UPDATE admin_service.support_tickets SET status = 'in_progress' WHERE assigned_to IS NOT NULL",
)
WHILE_THE_RELAY_DRAINS = (
    "INSERT INTO admin_service.ticket_comments (ticket_id, user_id, comment) "
    "SELECT id, assigned_to, 'Sorry, a refund is on its way' FROM admin_service.support_tickets "
    "WHERE assigned_to IS NOT NULL AND random() < 0.7",
    "UPDATE admin_service.support_tickets SET status = 'resolved', resolved_at = now(), resolution_notes = 'Refunded' "
    "WHERE status = 'in_progress' AND random() < 0.6",
)
WHILE_THE_RELAY_IS_DOWN = (
    "UPDATE admin_service.support_tickets SET status = 'closed' WHERE status = 'resolved' AND random() < 0.5",
    # two comments on one ticket in one statement, and a customer writing on after the close
    "INSERT INTO admin_service.ticket_comments (ticket_id, user_id, comment) "
    "SELECT t.id, t.user_id, c.text FROM admin_service.support_tickets t, (VALUES ('Thanks'), ('Bye')) c(text) "
    "WHERE random() < 0.1",
    # a change of a payload column (a statement changing none moves updated_at alone, which publishes nothing)
    "UPDATE admin_service.support_tickets SET priority = 'low', assigned_to = NULL "
    "WHERE assigned_to IS NOT NULL AND random() < 0.05",
)


@dataclass(frozen=True)
class Run:
    ingested: Ingested
    comparison: Comparison
    no_order: list[str]  # ids of the tickets about no order
    resent: set[str]  # events Kafka had acknowledged that the outbox still held when the relay was killed
    copies: dict[str, int]  # of each of those events in Kafka once the restarted relay drained
    snapshots: int  # TicketSnapshot events the backfill wrote


def open_tickets(db: str, cities: list[str]) -> list[str]:
    """An order (no items: the order stream publishes nothing of it) and a ticket about it per ORDERS, and
    NO_ORDER tickets about no order; returns the latter's ids."""
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, "
            "delivery_location) SELECT gen_random_uuid(), gen_random_uuid(), 'Ticket Bistro', "
            "(%(cities)s::text[])[1 + i %% cardinality(%(cities)s::text[])], 'thai', 'POINT(13.4 52.5)' "
            "FROM generate_series(1, %(orders)s) i",
            {"cities": cities, "orders": ORDERS},
        )
        conn.commit()
        orders = conn.execute("SELECT id, user_id FROM order_service.orders").fetchall()
        conn.execute(
            "INSERT INTO admin_service.support_tickets (user_id, order_id, subject, description, priority, "
            "created_at, updated_at) SELECT o.usr, o.id, 'Late order', 'It is late', "
            "(ARRAY['low', 'medium', 'high'])[1 + floor(random() * 3)::int], now() - interval '2 hours', "
            "now() - interval '2 hours' FROM unnest(%s::uuid[], %s::uuid[]) AS o(id, usr)",
            ([o[0] for o in orders], [o[1] for o in orders]),
        )
        rows = conn.execute(
            "INSERT INTO admin_service.support_tickets (user_id, subject, description) "
            "SELECT gen_random_uuid(), 'My account', 'Cannot log in' FROM generate_series(1, %s) RETURNING id::text",
            (NO_ORDER,),
        ).fetchall()
        conn.commit()
    return [row[0] for row in rows]


def write(db: str, statements: tuple[str, ...], agents: list[uuid.UUID]) -> None:
    with psycopg.connect(db) as conn:
        for statement in statements:
            conn.execute(statement, {"agents": agents} if "%(agents)s" in statement else None)
            conn.commit()


@pytest.fixture(scope="module")
def run(services: Services) -> Iterator[Run]:
    with recorded_run(services, "tickets") as recorded:
        db, cities = recorded.db, recorded.cities
        agents = [uuid.uuid4() for _ in range(5)]
        no_order = open_tickets(db, cities)
        write(db, BEFORE_THE_RELAY, agents)
        start = end_offsets(services.kafka_bootstrap, TOPIC)

        relays = [RelayProcess(services, db, relay_batch_size=str(BATCH))]
        try:
            total = backlog(db)
            write(db, WHILE_THE_RELAY_DRAINS, agents)
            wait_until(lambda: backlog(db) < total * 0.7, 60, what="the relay to be mid-drain")
            resent, _ = kill_mid_batch(relays[0], services.kafka_bootstrap, db, {TOPIC: start}, 2 * BATCH)
            write(db, WHILE_THE_RELAY_IS_DOWN, agents)
            resent = resent or send_waiting_events(services.kafka_bootstrap, db, "admin_service", FORCED_RESENDS)
            after_kill = end_offsets(services.kafka_bootstrap, TOPIC)
            relays.append(RelayProcess(services, db, relay_batch_size=str(BATCH)))
            # the existing tickets snapshotted too (`nibble backfill support_tickets`), as on a database that
            # predates the pipeline: every snapshot is one more event, the state unchanged
            snapshots = Backfill(db).run(["support_tickets"])[0].events
            wait_until(lambda: backlog(db) == 0, 120, what="the restarted relay to drain the outbox")
            copies = event_ids(services.kafka_bootstrap, {TOPIC: after_kill})

            cursor = broker_connection(services.pinot_broker_url).cursor()
            data = Ingested(db, cities, datetime.now(UTC) - timedelta(hours=3), datetime.now(UTC), cursor)
            comparison = await_pinot(data, 180, TICKET_TABLES)
            yield Run(data, comparison, no_order, resent, {e: copies[e] for e in resent}, snapshots)
        finally:
            for relay in relays:
                if relay.running:
                    relay.kill()


def test_pinot_equals_postgres_for_tickets_after_a_relay_kill(run: Run) -> None:
    assert run.comparison.equal, run.comparison.report()
    assert run.comparison.rows["support_tickets"] == ORDERS
    assert run.comparison.rows["ticket_events"] > 5 * ORDERS


def test_the_killed_relays_batch_was_sent_again(run: Run) -> None:
    # Kafka had them, the outbox still did: the restarted relay sent each again, and ticket_events holds each
    # once (the comparison above counts every event exactly once).
    assert run.resent
    assert all(copies >= 1 for copies in run.copies.values())


def test_the_backfill_snapshotted_every_ticket(run: Run) -> None:
    assert run.snapshots == ORDERS + NO_ORDER
    [[snapshots]] = run.ingested.pinot_rows(
        f"SELECT COUNT(*) FROM ticket_events WHERE event_type = 'TicketSnapshot' AND city IN ({run.ingested.city_list})"
    )
    assert snapshots == ORDERS


def test_every_event_type_reached_pinot(run: Run) -> None:
    types = {
        row[0]
        for row in run.ingested.pinot_rows(
            f"SELECT event_type, COUNT(*) FROM ticket_events WHERE city IN ({run.ingested.city_list}) "
            "GROUP BY event_type LIMIT 100"
        )
    }
    assert types >= {
        "TicketOpened",
        "TicketCommented",
        "TicketAssigned",
        "TicketPriorityChanged",
        "TicketStatusChanged",
        "TicketResolved",
        "TicketClosed",
        "TicketSnapshot",
    }


def test_tickets_about_no_order_equal_postgres(run: Run) -> None:
    expected = run.ingested.pg(
        "SELECT t.id::text, t.status, t.priority, (SELECT count(*) FROM admin_service.ticket_comments c "
        "WHERE c.ticket_id = t.id)::int, e.event_id::text FROM admin_service.support_tickets t "
        "JOIN LATERAL (SELECT event_id FROM public.committed_events c WHERE c.aggregate_id = t.id "
        "ORDER BY c.position DESC LIMIT 1) e ON true WHERE t.id = ANY(%s::uuid[]) ORDER BY 1",
        run.no_order,
    )
    ids = ", ".join(f"'{ticket}'" for ticket in run.no_order)  # uuids this test made
    observed = run.ingested.pinot_rows(
        f"SELECT ticket_id, status, priority, comment_count, event_id FROM support_tickets "
        f"WHERE ticket_id IN ({ids}) ORDER BY ticket_id LIMIT 1000"
    )
    assert [tuple(row) for row in observed] == expected
