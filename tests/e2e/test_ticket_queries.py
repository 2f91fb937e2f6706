"""The support-ticket queries of the library against PostgreSQL, through the whole pipeline (triggers, relay,
Kafka, Pinot), on tables and topics of this module's own (NIBBLE_PINOT_TABLE_PREFIX, NIBBLE_TOPIC_PREFIX).

The shared end-to-end test runs the same checks, on activity whose tickets have all closed; here tickets are
also still open right now (some unanswered, of every age band), so "open right now" and "oldest unanswered"
have something to count.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.pinot import broker_connection
from pipeline.analytics.tables import apply, desired_specs
from pipeline.devstack.generator import CITIES, Generator
from tests.support.database import scratch_database
from tests.support.exactness import Ingested, ledger_ingested
from tests.support.history import drop_tables_and_topics
from tests.support.polling import wait_until
from tests.support.prefixed_tables import PrefixedCursor
from tests.support.relay import RelayProcess, delete_subjects
from tests.support.services import Services
from tests.support.ticket_queries import TICKET_QUERY_CHECKS, tickets_ingested


def write_activity(generator: Generator, now: datetime) -> None:
    """Eight hours of orders whose tickets all ran their course, then six more hours written up to `now` as the
    live generator would: the tickets of the last hours are still open, waiting for an agent or an answer."""
    generator.run_batch(1500, now - timedelta(hours=14), per_minute=5)
    at = now - timedelta(hours=6)
    with psycopg.connect(generator.database_url) as conn:
        while at < now:
            generator.advance(conn, at)
            generator.place(conn, 8, at)
            at += timedelta(minutes=2)
        generator.advance(conn, now)


@pytest.fixture(scope="module")
def ingested(services: Services) -> Iterator[Ingested]:
    tag = uuid.uuid4().hex[:8]
    table_prefix, topic_prefix = f"tk{tag}_", f"tk{tag}."
    settings = services.settings(topic_prefix)
    settings = settings.model_copy(update={"pinot": settings.pinot.model_copy(update={"table_prefix": table_prefix})})
    names = {spec.name.removeprefix(table_prefix) for spec in desired_specs(settings)}
    with scratch_database(services.database_url, "tickets", migrated=True) as db:
        relay = None
        try:
            apply(settings)
            generator = Generator(db, seed=20, city_suffix=f"-{tag}")
            now = datetime.now(UTC).replace(microsecond=0)
            write_activity(generator, now)
            relay = RelayProcess(services, db, topic_prefix)
            cursor = PrefixedCursor(broker_connection(services.pinot_broker_url).cursor(), table_prefix, names)
            cities = [city + f"-{tag}" for city in CITIES]
            # Resolutions run up to a day past the last order: the window covers them.
            scope = Ingested(db, cities, now - timedelta(hours=15), now + timedelta(days=2), cursor)
            wait_until(lambda: tickets_ingested(scope), 300, what="Pinot to hold every ticket as PostgreSQL does")
            wait_until(lambda: ledger_ingested(scope), 300, what="Pinot's order ledger to sum to PostgreSQL's orders")
            yield scope
        finally:
            if relay is not None and relay.running:
                relay.terminate()
            drop_tables_and_topics(settings, topic_prefix)
            delete_subjects(topic_prefix)


def test_the_scope_has_tickets_open_unanswered_and_resolved(ingested: Ingested) -> None:
    (states,) = ingested.pg(
        "SELECT count(*) FILTER (WHERE status IN ('open', 'in_progress')), "
        "count(*) FILTER (WHERE status = 'open' AND NOT EXISTS (SELECT 1 FROM admin_service.ticket_comments c "
        "WHERE c.ticket_id = t.id AND NOT c.is_internal AND c.user_id <> t.user_id)), "
        "count(*) FILTER (WHERE resolved_at IS NOT NULL) FROM admin_service.support_tickets t"
    )
    assert all(states), states


@pytest.mark.parametrize("name", sorted(TICKET_QUERY_CHECKS))
def test_ticket_query_equals_postgres(ingested: Ingested, name: str) -> None:
    TICKET_QUERY_CHECKS[name](ingested)
