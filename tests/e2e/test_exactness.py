"""The exactness check (tests/support/exactness.py) catches what it exists to catch. A scratch run of a few
orders goes through the real relay, Kafka and Pinot after four faults made on purpose:

- a lost event: an order's status change deleted from the outbox before the relay ran (a later event of
  the same order was published, so only the event history lacks it);
- a stale column: one order's `payment_status` and one delivery's `distance_m` changed in PostgreSQL with
  the triggers off (`session_replication_role = replica`), so no event told Pinot;
- a duplicate: one order's ledger entry published a second time under a new event id, as a relay that
  re-encoded a re-send would (Pinot's dedup cannot drop it; the sums double);
- rolled-back work: an order placed in a transaction that rolled back, its outbox rows published anyway.

The check must report each of them, naming its id, and nothing else. The same event id twice in Pinot's
answers (which its dedup makes impossible to stage) is tests/unit/test_exactness_rules.py's.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import Producer

from connectors.pinot import broker_connection
from pipeline.contract.codec import Codec
from pipeline.contract.rows import OutboxRow
from pipeline.devstack.generator import Generator
from tests.support.exactness import Comparison, Ingested, backlog, compare, recorded_run
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.workload import insert_orders

ORDERS = 40
OUTBOX_ROWS = (
    "SELECT position, event_id::text, aggregate_type, aggregate_id::text, event_type, payload::text, "
    "schema_version, txid::text::bigint, occurred_at FROM order_service.outbox "
)
Found = tuple[str, str, str, str]  # (Pinot table, kind, id, column) of a difference


@dataclass(frozen=True)
class Faults:
    lost_event: str
    stale_order: str
    stale_delivery: str
    duplicate_event: str
    doubled_order: str
    rolled_back_order: str
    rolled_back_events: list[str]  # the order event, the ledger entry

    def expected(self) -> set[Found]:
        measures = {("order_ledger", "stale", self.doubled_order, m) for m in ("orders", "gmv_cents")}
        measures |= {("order_ledger", "stale", self.doubled_order, m) for m in ("subtotal_cents", "items")}
        order_event, ledger_entry = self.rolled_back_events
        return measures | {
            ("order_events", "missing", self.lost_event, ""),
            ("orders", "stale", self.stale_order, "payment_status"),
            ("deliveries", "stale", self.stale_delivery, "distance_m"),
            ("order_ledger", "extra", self.duplicate_event, ""),
            ("order_events", "extra", order_event, ""),
            ("order_ledger", "extra", ledger_entry, ""),
            ("orders", "extra", self.rolled_back_order, ""),
            ("order_ledger", "extra", self.rolled_back_order, ""),
        }


def found(comparison: Comparison) -> set[Found]:
    return {(d.table, d.kind, d.key, d.column) for d in comparison.differences}


def make_faults(conn: psycopg.Connection, city: str) -> tuple[Faults, list[OutboxRow]]:
    """The four faults, in PostgreSQL; returns them and the rows to publish behind the relay's back."""
    [(lost_event, lost_order)] = conn.execute(
        "SELECT event_id::text, aggregate_id::text FROM order_service.outbox o "
        "WHERE event_type = 'OrderStatusChanged' AND EXISTS (SELECT 1 FROM order_service.outbox later "
        "WHERE later.aggregate_id = o.aggregate_id AND later.aggregate_type = 'order' AND later.position > o.position) "
        "ORDER BY position LIMIT 1"
    ).fetchall()
    conn.execute("DELETE FROM order_service.outbox WHERE event_id = %s", (lost_event,))
    [(stale_order, doubled_order)] = conn.execute(
        "SELECT (array_agg(id::text ORDER BY id))[1], (array_agg(id::text ORDER BY id))[2] "
        "FROM order_service.orders WHERE status = 'delivered' AND id <> %s",
        (lost_order,),
    ).fetchall()
    [(stale_delivery,)] = conn.execute(
        "SELECT id::text FROM driver_service.deliveries WHERE distance_m IS NOT NULL ORDER BY id LIMIT 1"
    ).fetchall()
    conn.execute("SET session_replication_role = replica")  # no trigger fires: no event, no updated_at
    conn.execute("UPDATE order_service.orders SET payment_status = 'refunded' WHERE id = %s", (stale_order,))
    conn.execute("UPDATE driver_service.deliveries SET distance_m = distance_m + 1 WHERE id = %s", (stale_delivery,))
    conn.execute("SET session_replication_role = origin")
    [entry] = [
        OutboxRow(*row)
        for row in conn.execute(
            OUTBOX_ROWS + "WHERE aggregate_type = 'order_ledger' AND aggregate_id = %s", (doubled_order,)
        )
    ]
    conn.commit()
    duplicate = OutboxRow(**{**entry.__dict__, "event_id": str(uuid.uuid4())})

    rolled_back_order = str(uuid.uuid4())
    insert_orders(conn, [rolled_back_order], city)
    rolled_back = [
        OutboxRow(*row) for row in conn.execute(OUTBOX_ROWS + "WHERE txid = pg_current_xact_id() ORDER BY 3")
    ]
    conn.rollback()
    assert [row.aggregate_type for row in rolled_back] == ["order", "order_ledger"]
    faults = Faults(
        lost_event,
        stale_order,
        stale_delivery,
        duplicate.event_id,
        doubled_order,
        rolled_back_order,
        [row.event_id for row in rolled_back],
    )
    return faults, [duplicate, *rolled_back]


@pytest.fixture(scope="module")
def checked(services: Services) -> Iterator[tuple[Faults, Comparison]]:
    with recorded_run(services, "exact") as recorded:
        db, cities = recorded.db, recorded.cities
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        Generator(db, seed=7, city_suffix=recorded.suffix).run_batch(ORDERS, start, per_minute=10)
        with psycopg.connect(db) as conn:
            faults, behind_the_relays_back = make_faults(conn, cities[0])
        # The ledger's entries of an order sit in the order outbox: the only one of doubled_order's events.
        assert behind_the_relays_back[0].aggregate_type == "order_ledger"
        codec = Codec()
        producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
        for message in map(codec.encode, behind_the_relays_back):
            producer.produce(message.topic, message.value, message.key, headers=message.headers)
        assert producer.flush(30) == 0
        relay = RelayProcess(services, db)
        try:
            wait_until(lambda: backlog(db) == 0, 120, what="the relay to drain every outbox")
            cursor = broker_connection(services.pinot_broker_url).cursor()
            scope = Ingested(db, cities, start, datetime.now(UTC), cursor)
            comparisons: list[Comparison] = []
            expected = faults.expected()

            def settled() -> bool:
                comparisons.append(compare(scope))
                return found(comparisons[-1]) == expected

            with contextlib.suppress(AssertionError):  # timed out: the tests below say what was (not) reported
                wait_until(settled, 120, what="the check to report every fault and nothing else")
            yield faults, comparisons[-1]
        finally:
            relay.kill()


def test_a_lost_event_is_reported_by_id(checked: tuple[Faults, Comparison]) -> None:
    faults, comparison = checked
    assert f"missing in Pinot: order_events event {faults.lost_event}" in comparison.report(first=100)


def test_a_stale_column_is_reported_with_both_values(checked: tuple[Faults, Comparison]) -> None:
    faults, comparison = checked
    report = comparison.report(first=100)
    assert f"stale column payment_status of order {faults.stale_order}: pinot='captured' pg='refunded'" in report
    assert f"stale column distance_m of delivery {faults.stale_delivery}: pinot=" in report


def test_a_duplicated_ledger_entry_is_reported_as_extra_and_its_sums_as_stale(
    checked: tuple[Faults, Comparison],
) -> None:
    faults, comparison = checked
    report = comparison.report(first=100)
    assert f"extra in Pinot: order_ledger event {faults.duplicate_event}" in report
    assert f"stale column orders of ledger of order {faults.doubled_order}: pinot=2 pg=1" in report


def test_rolled_back_work_is_reported_as_extra(checked: tuple[Faults, Comparison]) -> None:
    faults, comparison = checked
    report = comparison.report(first=100)
    assert f"extra in Pinot: order {faults.rolled_back_order}" in report
    for event_id in faults.rolled_back_events:
        assert f"event {event_id}" in report


def test_nothing_else_is_reported(checked: tuple[Faults, Comparison]) -> None:
    faults, comparison = checked
    assert found(comparison) == faults.expected(), comparison.report(first=100)
