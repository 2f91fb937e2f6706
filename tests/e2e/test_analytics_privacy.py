"""Analytics without personal data (issue 22 item 3, migration 0027) over a generated workload on the real stack:
the generator's orders, deliveries and tickets -> outbox triggers -> relay -> Kafka -> Pinot.

- No topic and no Pinot table holds a customer's id or an exact drop-off point: every event this database
  committed is read back from each topic, and every row of its cities from each Pinot table; a customer is
  known only by a pseudonym, the same for all their orders and tickets, and Pinot still equals PostgreSQL
  (tests/support/exactness.py compares the pseudonym and the coarsened points).
- `nibble forget` (pipeline/privacy/forgetting.py) removes a customer's link: afterwards no PostgreSQL table
  holds their pseudonym, and the newest event of each of their orders and tickets (what the compacted topics
  keep and Pinot's upsert tables show) carries none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.pinot import broker_connection
from pipeline.contract import catalog
from pipeline.contract.codec import Codec
from pipeline.devstack.generator import Generator
from pipeline.privacy.coarsening import is_coarse
from pipeline.privacy.forgetting import forget
from tests.support.exactness import Comparison, Ingested, await_pinot, backlog, recorded_run
from tests.support.load import end_offsets, read_messages
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services

ORDERS = 400
STREAMS = catalog.load()
DROP_OFF = {"order": ("delivery_lat", "delivery_lon"), "delivery": ("dropoff_lat", "dropoff_lon")}
PINOT_DROP_OFF = {
    table: DROP_OFF[aggregate] for aggregate, stream in STREAMS.items() if aggregate in DROP_OFF
    for table in stream.pinot_tables
}  # fmt: skip
CUSTOMERS = (
    "SELECT user_id::text FROM order_service.orders UNION SELECT user_id::text FROM admin_service.support_tickets"
)


@dataclass
class Run:
    services: Services
    ingested: Ingested
    comparison: Comparison
    offsets: dict[str, dict[int, int]]  # each topic's end before the relay started

    def pg(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.ingested.pg(query, *params)

    def events(self) -> dict[str, list[dict[str, Any]]]:
        """Every event this database committed, per aggregate type, as a consumer decodes it (in topic order)."""
        committed = {row[0] for row in self.pg("SELECT event_id::text FROM public.committed_events")}
        codec, read = Codec(), defaultdict(list)
        for aggregate in STREAMS:
            topic = codec.streams[aggregate].topic
            for headers, value in read_messages(self.services.kafka_bootstrap, self.offsets[topic], topic):
                if headers["event_id"] in committed:
                    read[aggregate].append(codec.decode(value, aggregate, int(headers["schema_version"])))
        return read

    def pinot(self, table: str) -> list[dict[str, Any]]:
        cursor = self.ingested.pinot
        cursor.execute(f"SELECT * FROM {table} WHERE city IN ({self.ingested.city_list}) LIMIT 1000000")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def run(services: Services) -> Iterator[Run]:
    with recorded_run(services, "privacy") as recorded:
        db = recorded.db
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        Generator(db, seed=22, city_suffix=recorded.suffix).run_batch(ORDERS, start, per_minute=25)
        offsets = {topic: end_offsets(services.kafka_bootstrap, topic) for topic in Codec().topics}
        relay = RelayProcess(services, db)
        try:
            wait_until(lambda: backlog(db) == 0, 180, what="the relay to drain every outbox")
            cursor = broker_connection(services.pinot_broker_url).cursor()
            data = Ingested(
                db, recorded.cities, start - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1), cursor
            )
            yield Run(services, data, await_pinot(data, 180), offsets)
        finally:
            if relay.running:
                relay.kill()


def _values(record: dict[str, Any]) -> set[str]:
    return {str(value) for value in record.values() if value is not None}


def test_no_topic_carries_a_customer_id_or_an_exact_drop_off_point(run: Run) -> None:
    customers = {row[0] for row in run.pg(CUSTOMERS)}
    events = run.events()
    assert {"order", "delivery", "ticket"} <= events.keys(), events.keys()
    for aggregate, records in events.items():
        for record in records:
            assert not _values(record) & customers, (aggregate, record)
            for field in DROP_OFF.get(aggregate, ()):
                assert is_coarse(record[field]), (aggregate, field, record[field])
    for record in events["order"] + events["ticket"]:
        assert record["user_id"] is None and record["customer_pseudonym"] is not None
    # a customer's own comment names no author; an agent's does
    comments = [r for r in events["ticket"] if r["event_type"] == "TicketCommented"]
    assert any(r["comment_author_id"] is None for r in comments) and any(r["comment_author_id"] for r in comments)


def test_no_pinot_table_holds_a_customer_id_or_an_exact_drop_off_point(run: Run) -> None:
    customers = {row[0] for row in run.pg(CUSTOMERS)}
    tables = {table for stream in STREAMS.values() for table in stream.pinot_tables}
    for table in sorted(tables):
        rows = run.pinot(table)
        assert rows, table
        for row in rows:
            assert not _values(row) & customers, (table, row)
            assert row.get("user_id", "null") == "null", (table, row)
            for column in PINOT_DROP_OFF.get(table, ()):
                assert is_coarse(row[column]), (table, column, row[column])


def test_a_customer_has_one_pseudonym_across_orders_and_tickets_and_pinot_equals_postgres(run: Run) -> None:
    assert run.comparison.equal, run.comparison.report()
    [(customers, pseudonyms, repeat)] = run.pg(
        "SELECT count(DISTINCT user_id), count(DISTINCT customer_pseudonym), "
        "count(*) FILTER (WHERE n > 1) FROM (SELECT user_id, customer_pseudonym, count(*) OVER (PARTITION BY "
        "user_id) AS n FROM order_service.orders) o"
    )
    assert customers == pseudonyms and repeat > 0  # repeat customers stay countable
    [(mismatched,)] = run.pg(
        "SELECT count(*) FROM admin_service.support_tickets t JOIN order_service.customer_pseudonyms p "
        "USING (user_id) WHERE t.customer_pseudonym IS DISTINCT FROM p.pseudonym"
    )
    assert mismatched == 0


def test_forgetting_a_customer_removes_their_link(run: Run) -> None:
    [(customer, pseudonym)] = run.pg(
        "SELECT o.user_id, o.customer_pseudonym FROM order_service.orders o "
        "WHERE order_service.is_visible(o) AND EXISTS (SELECT FROM admin_service.support_tickets t "
        "WHERE t.user_id = o.user_id) GROUP BY 1, 2 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    orders = {
        row[0]
        for row in run.pg(
            "SELECT id::text FROM order_service.orders o WHERE user_id = %s AND order_service.is_visible(o)", customer
        )
    }
    tickets = {r[0] for r in run.pg("SELECT id::text FROM admin_service.support_tickets WHERE user_id = %s", customer)}
    offsets = {topic: end_offsets(run.services.kafka_bootstrap, topic) for topic in run.offsets}

    done = forget(run.ingested.db, customer, print)
    assert (done.links, done.tickets) == (1, len(tickets)) and done.orders >= len(orders) > 0
    assert forget(run.ingested.db, customer, print).links == 0  # nothing left to forget

    # PostgreSQL: the pseudonym is nowhere, so the one in Kafka's and Pinot's history names nobody
    [(held,)] = run.pg(
        "SELECT (SELECT count(*) FROM order_service.customer_pseudonyms WHERE user_id = %s OR pseudonym = %s) "
        "+ (SELECT count(*) FROM order_service.orders WHERE customer_pseudonym = %s) "
        "+ (SELECT count(*) FROM admin_service.support_tickets WHERE customer_pseudonym = %s)",
        customer,
        pseudonym,
        pseudonym,
        pseudonym,
    )
    assert held == 0
    # Kafka: each of their orders and tickets has a newer event without it (the compacted topics' newest)
    wait_until(lambda: backlog(run.ingested.db) == 0, 60, what="the relay to publish the forgetting")
    codec, newest = Codec(), {}
    for aggregate, key in (("order", "order_id"), ("ticket", "ticket_id")):
        topic = codec.streams[aggregate].topic
        for headers, value in read_messages(run.services.kafka_bootstrap, offsets[topic], topic):
            record = codec.decode(value, aggregate, int(headers["schema_version"]))
            if str(record[key]) in orders | tickets:
                newest[str(record[key])] = record
    assert newest.keys() == orders | tickets
    assert all(record["customer_pseudonym"] is None for record in newest.values())

    # Pinot's upsert tables show the state without it
    def unlinked() -> bool:
        return not any(
            run.ingested.pinot_rows(f"SELECT COUNT(*) FROM {table} WHERE customer_pseudonym = %(p)s", p=str(pseudonym))[
                0
            ][0]
            for table in ("orders", "support_tickets")
        )

    wait_until(unlinked, 60, what="Pinot's orders and support_tickets to show the customer without a pseudonym")
    assert await_pinot(run.ingested, 120).equal
