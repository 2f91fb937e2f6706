"""The whole pipeline on the real stack: generated activity -> triggers -> relay (killed with -9 once and
restarted) -> Kafka -> Pinot. Pinot must equal PostgreSQL row by row with every event exactly once, and
every query of the analysts' library is checked against a value computed from PostgreSQL.

The kill is proven to land mid-batch: the relay is killed while Kafka holds events of its batch that the
outbox still has (acknowledged, not yet deleted), so the restarted relay sends them again and Pinot's dedup
has duplicates to drop. Each try freezes the relay (SIGSTOP), compares the outbox with the tail of the
topics and kills it there, or lets it run on; should no try catch a batch in flight, the test sends a few
waiting events itself, as the killed relay would have, so a re-send always happens.

The tables and topics are the real ones, shared with everything else the stack has seen; this module's
data lives in cities of its own (a random suffix), and every comparison (tests/support/exactness.py) is
restricted to them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.pinot import broker_connection
from pipeline.analytics.queries import library
from pipeline.contract.codec import Codec
from pipeline.devstack.generator import Generator
from tests.support.exactness import (
    QUERY_CHECKS,
    Comparison,
    Ingested,
    await_pinot,
    backlog,
    recorded_run,
)
from tests.support.load import end_offsets, event_ids
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.resend import kill_mid_batch, send_waiting_events
from tests.support.services import Services
from tests.support.ticket_queries import TICKET_QUERY_CHECKS

ORDERS = 3000
FORCED_RESENDS = 10
BATCH = 500  # the tail of each partition read per try holds any batch in flight


@dataclass(frozen=True)
class Run:
    ingested: Ingested
    comparison: Comparison
    resent: set[str]  # events Kafka had acknowledged that the outbox still held when the relay was killed
    forced: bool  # the test sent them itself: no try caught a batch in flight
    tries: int
    copies: Counter[str]  # of each of those events in Kafka after the kill, once the restarted relay drained


@pytest.fixture(scope="module")
def run(services: Services) -> Iterator[Run]:
    with recorded_run(services, "e2e") as recorded:
        db, cities = recorded.db, recorded.cities
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        generator = Generator(db, seed=42, city_suffix=recorded.suffix)
        generator.run_batch(ORDERS, start, per_minute=25)
        # Some orders still under way, so "active right now" has something to count.
        with psycopg.connect(db) as conn:
            now = datetime.now(UTC)
            generator.place(conn, 40, now - timedelta(minutes=10))
            generator.advance(conn, now)
        offsets = {topic: end_offsets(services.kafka_bootstrap, topic) for topic in Codec().topics}

        relays = [RelayProcess(services, db, relay_batch_size=str(BATCH))]
        try:
            total = backlog(db)
            wait_until(lambda: backlog(db) < total * 0.7, 60, what="the first relay to be mid-stream")
            resent, tries = kill_mid_batch(relays[0], services.kafka_bootstrap, db, offsets, 2 * BATCH)
            forced = not resent
            if forced:
                # On a quiet machine the relay may have drained every outbox by its last try: a few orders
                # placed now, with the relay dead, give the test events to send as the killed relay would have.
                with psycopg.connect(db) as conn:
                    generator.place(conn, FORCED_RESENDS, datetime.now(UTC))
                resent = send_waiting_events(services.kafka_bootstrap, db, "order_service", FORCED_RESENDS)
            after_kill = {topic: end_offsets(services.kafka_bootstrap, topic) for topic in offsets}
            relays.append(RelayProcess(services, db, relay_batch_size=str(BATCH)))
            wait_until(lambda: backlog(db) == 0, 120, what="the restarted relay to drain every outbox")
            copies = event_ids(services.kafka_bootstrap, after_kill)
            print(
                f"\nrelay kill -9: {len(resent)} acknowledged events still in the outbox "
                f"({'sent by the test' if forced else f'caught in flight, try {tries}'})"
            )

            cursor = broker_connection(services.pinot_broker_url).cursor()
            data = Ingested(db, cities, start - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1), cursor)
            yield Run(data, await_pinot(data, 180), resent, forced, tries, Counter({e: copies[e] for e in resent}))
        finally:
            for relay in relays:
                if relay.running:
                    relay.kill()


@pytest.fixture(scope="module")
def ingested(run: Run) -> Ingested:
    return run.ingested


def test_the_killed_relay_left_acknowledged_events_that_were_sent_again(run: Run) -> None:
    assert run.resent, "the kill landed between batches: nothing to re-send"
    assert all(run.copies.values()), f"not sent again: {[e for e, n in run.copies.items() if not n]}"


def test_pinot_equals_postgres_row_by_row_with_every_event_once(run: Run) -> None:
    assert run.comparison.equal, run.comparison.report()
    assert run.comparison.rows["orders"] > ORDERS and run.comparison.rows["deliveries"] > 0


CHECKS = {**QUERY_CHECKS, **TICKET_QUERY_CHECKS}


def test_every_library_query_is_checked() -> None:
    assert set(CHECKS) == set(library())


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_library_query_equals_postgres(ingested: Ingested, name: str) -> None:
    CHECKS[name](ingested)
