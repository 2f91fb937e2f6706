"""The order event semantics of docs/events.md (migration 0012) through the whole pipeline.

One database of this module's own gets a named scenario per row of the semantics table, two connections
editing one order's items at once, and a seeded random walk of allowed business changes over a few hundred
orders from several connections. The relay (as `nibble_relay`) publishes it all to the real topics and
Pinot tables; this module's orders live in cities of their own (a random suffix) and every comparison is
restricted to them. Pinot must then hold, per order, exactly the events the semantics table predicts, and
its `orders` rows must equal PostgreSQL's final rows column by column.
"""

from __future__ import annotations

import functools
import itertools
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from connectors.pinot import broker_connection
from pipeline.analytics.tables import apply
from tests.support.database import scratch_database
from tests.support.exactness import Ingested, backlog, outbox_counts, q
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services

WALK_ORDERS = 300
WALKERS = 4  # connections, each on a thread of its own
WALK_STEPS = 400  # transactions per walker
SEED = 9
FORWARD = ("placed", "confirmed", "preparing", "ready_for_pickup", "picked_up", "delivered")

PINOT_COLUMNS = (
    "order_id", "customer_pseudonym", "restaurant_id", "restaurant_name", "city", "cuisine", "status", "item_count",
    "subtotal_cents", "delivery_fee_cents", "tip_cents", "total_cents", "currency", "payment_status",
    "cancel_reason", "delivery_lat", "delivery_lon", "placed_at", "promised_at", "updated_at",
)  # fmt: skip
TIMESTAMPS = {"placed_at", "promised_at", "updated_at"}
PINOT_NULLS = {"payment_status": "null", "cancel_reason": "null"}  # Pinot's default for a null STRING
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Payload = dict[str, Any]


# --- the semantics table as a rule over two consecutive states of one order ---------------------------------


def event_for(before: Payload, after: Payload, was_visible: bool, is_visible: bool) -> str | None:
    """The event docs/events.md predicts for a statement taking an order from `before` to `after`."""
    if not is_visible or _without_updated_at(before) == _without_updated_at(after):
        return None
    if not was_visible:
        return "OrderPlaced"
    if after["status"] == "cancelled" and before["status"] != "cancelled":
        return "OrderCancelled"
    if after["status"] != before["status"]:
        return "OrderStatusChanged"
    if after["payment_status"] != before["payment_status"] and after["payment_status"] == "captured":
        return "PaymentCaptured"
    if after["payment_status"] != before["payment_status"] and after["payment_status"] == "refunded":
        return "PaymentRefunded"
    return "OrderUpdated"


def _without_updated_at(payload: Payload) -> Payload:
    return {key: value for key, value in payload.items() if key != "updated_at"}


@dataclass(frozen=True)
class Transaction:
    """One committed transaction on one order: the order when locked, then after each statement."""

    order_id: uuid.UUID
    version: int  # the order's commit order (see `lock`)
    states: list[Payload]


def predicted_events(transactions: list[Transaction]) -> dict[str, list[tuple[str, Payload]]]:
    """Per order, in commit order, the (event type, payload) pairs the semantics table predicts."""
    by_order: dict[uuid.UUID, list[Transaction]] = defaultdict(list)
    for transaction in transactions:
        by_order[transaction.order_id].append(transaction)
    predicted = {}
    for order_id, history in by_order.items():
        events = []
        visible = False  # "has had items", remembered by the model itself, not read from orders.announced
        for transaction in sorted(history, key=lambda t: t.version):
            for before, after in itertools.pairwise(transaction.states):
                was_visible, visible = visible, visible or after["item_count"] > 0
                kind = event_for(before, after, was_visible, visible)
                if kind is not None:
                    events.append((kind, after))
        predicted[str(order_id)] = events
    return predicted


def pinot_values(payload: Payload) -> tuple:
    """A payload as Pinot stores it: timestamps as epoch millis (truncated, as the relay's Avro codec does)."""
    values = []
    for column in PINOT_COLUMNS:
        value = payload[column]
        if value is None:
            value = PINOT_NULLS[column]
        elif column in TIMESTAMPS:
            value = (datetime.fromisoformat(value) - EPOCH) // timedelta(milliseconds=1)
        values.append(value)
    return tuple(values)


# --- business changes, written the way the order service writes them ---------------------------------------


def insert_order(conn: psycopg.Connection[Any], city: str, **overrides: Any) -> uuid.UUID:
    values = {
        "user_id": uuid.uuid4(),
        "restaurant_id": uuid.uuid4(),
        "restaurant_name": "Pho 24",
        "city": city,
        "cuisine": "vietnamese",
        "delivery_fee": "2.49",
        "tip": "1.00",
        "delivery_location": "SRID=4326;POINT(13.404954 52.520008)",
        "promised_at": datetime.now(UTC) + timedelta(minutes=35),
        **overrides,
    }
    query = sql.SQL("INSERT INTO order_service.orders ({}) VALUES ({}) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(map(sql.Placeholder, values))
    )
    row = conn.execute(query, values).fetchone()
    assert row is not None
    return row[0]


def add_items(conn: psycopg.Connection[Any], order_id: uuid.UUID, *lines: tuple[int, str]) -> None:
    """All (quantity, unit price) lines in one INSERT."""
    conn.execute(
        "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price) "
        "SELECT %s, gen_random_uuid(), 'Pho bo', q, p FROM unnest(%s::int[], %s::numeric[]) AS line(q, p)",
        (order_id, [quantity for quantity, _ in lines], [price for _, price in lines]),
    )


def remove_items(conn: psycopg.Connection[Any], order_id: uuid.UUID) -> None:
    conn.execute("DELETE FROM order_service.order_items WHERE order_id = %s", (order_id,))


def first_item(conn: psycopg.Connection[Any], order_id: uuid.UUID, change: str, *params: Any) -> None:
    """`change` (an UPDATE SET list, or DELETE) applied to the order's first item."""
    target = "WHERE id = (SELECT id FROM order_service.order_items WHERE order_id = %s ORDER BY id LIMIT 1)"
    statement = (
        "DELETE FROM order_service.order_items "
        if change == "DELETE"
        else f"UPDATE order_service.order_items SET {change} "
    )
    conn.execute(statement + target, (*params, order_id))


def set_order(conn: psycopg.Connection[Any], order_id: uuid.UUID, assignments: str, **values: Any) -> None:
    conn.execute(f"UPDATE order_service.orders SET {assignments} WHERE id = %(id)s", {"id": order_id, **values})


def pay(conn: psycopg.Connection[Any], order_id: uuid.UUID, status: str) -> None:
    """A payment row the first time, then that row's status (the order's payment_status follows it)."""
    if not conn.execute(
        "UPDATE order_service.payments SET status = %s WHERE order_id = %s", (status, order_id)
    ).rowcount:
        conn.execute(
            "INSERT INTO order_service.payments (order_id, amount, method, status) VALUES (%s, 20, 'card', %s)",
            (order_id, status),
        )


def state(conn: psycopg.Connection[Any], order_id: uuid.UUID) -> Payload:
    row = conn.execute(
        "SELECT order_service.order_payload(o) FROM order_service.orders o WHERE id = %s", (order_id,)
    ).fetchone()
    assert row is not None
    return row[0]


def lock(conn: psycopg.Connection[Any], order_id: uuid.UUID) -> tuple[int, Payload]:
    """Take the order's row lock for the transaction and number the transaction. The counter lives in a
    column no payload carries, so the bump is no event, and the numbers follow the order's commit order."""
    row = conn.execute(
        "UPDATE order_service.orders o "
        "SET special_instructions = (coalesce(special_instructions, '0')::int + 1)::text "
        "WHERE id = %s RETURNING special_instructions::int, order_service.order_payload(o)",
        (order_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def in_threads(*targets: Callable[[], None]) -> None:
    """Each target on a thread of its own (each opens its own connection); the first failure is re-raised."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# --- the random walk ----------------------------------------------------------------------------------------

Change = Callable[[psycopg.Connection[Any], uuid.UUID, random.Random], None]


def _lines(rng: random.Random) -> list[tuple[int, str]]:
    return [(rng.randint(1, 3), rng.choice(["0.99", "4.50", "9.90", "12.00"])) for _ in range(rng.randint(1, 3))]


def allowed_changes(order: Payload) -> list[Change]:
    """The business changes the order service may make to an order in this state (status only forward)."""
    status, payment, items = order["status"], order["payment_status"], order["item_count"]
    changes: list[Change] = [
        lambda c, o, r: set_order(c, o, "tip = %(tip)s", tip=r.choice(["0", "1.50", "3.00"])),
        lambda c, o, r: set_order(c, o, "promised_at = promised_at + interval '5 minutes'"),
        lambda c, o, r: set_order(c, o, "delivery_address_id = gen_random_uuid()"),  # not in the payload
    ]
    if status in ("placed", "confirmed"):
        changes += [
            lambda c, o, r: add_items(c, o, *_lines(r)),
            lambda c, o, r: first_item(c, o, "DELETE"),
            lambda c, o, r: first_item(c, o, "quantity = %s", r.randint(1, 4)),
            lambda c, o, r: first_item(c, o, "customizations = %s", Jsonb({"spicy": True})),  # not in the payload
            lambda c, o, r: remove_items(c, o),
        ]
    if status not in ("delivered", "cancelled"):
        changes.append(lambda c, o, r: set_order(c, o, "status = 'cancelled', cancel_reason = 'customer'"))
        if items > 0:
            following = FORWARD[FORWARD.index(status) + 1]
            changes.append(lambda c, o, r: set_order(c, o, "status = %(s)s", s=following))
    if items > 0 and payment is None:
        changes.append(lambda c, o, r: pay(c, o, r.choice(["authorized", "authorized", "failed"])))
    if payment == "authorized":
        changes.append(lambda c, o, r: pay(c, o, "captured"))
    if payment == "captured" and status in ("delivered", "cancelled"):
        changes.append(lambda c, o, r: pay(c, o, "refunded"))
    return changes


def walk(db: str, order_ids: list[uuid.UUID], seed: int, record: list[Transaction]) -> None:
    """WALK_STEPS transactions of one to three allowed changes on random orders; one in twenty rolls back."""
    rng = random.Random(seed)
    with psycopg.connect(db) as conn:
        for _ in range(WALK_STEPS):
            order_id = rng.choice(order_ids)
            roll_back = rng.random() < 0.05
            with conn.transaction():
                version, order = lock(conn, order_id)
                states = [order]
                for _ in range(rng.randint(1, 3)):
                    rng.choice(allowed_changes(states[-1]))(conn, order_id, rng)
                    states.append(state(conn, order_id))
                if roll_back:
                    raise psycopg.Rollback()
            if not roll_back:
                record.append(Transaction(order_id, version, states))


def random_walk(db: str, city: str) -> list[Transaction]:
    with psycopg.connect(db) as conn:
        order_ids = [insert_order(conn, city) for _ in range(WALK_ORDERS)]
        conn.commit()
    record: list[Transaction] = []
    in_threads(*(functools.partial(walk, db, order_ids, SEED + n, record) for n in range(WALKERS)))
    return record


# --- scenarios: one order per row of the semantics table ------------------------------------------------------


def run_scenarios(conn: psycopg.Connection[Any], cities: dict[str, str]) -> dict[str, uuid.UUID]:
    """Each `step` is one committed transaction."""
    ids: dict[str, uuid.UUID] = {}

    def order(name: str, city: str = cities["scenarios"], **overrides: Any) -> uuid.UUID:
        ids[name] = insert_order(conn, city, **overrides)
        conn.commit()
        return ids[name]

    def step(*changes: Callable[[], object]) -> None:
        for change in changes:
            change()
        conn.commit()

    o = order("replaced_before_confirmation", cities["funnel"])
    step(lambda: add_items(conn, o, (2, "9.90"), (1, "4.50")))
    step(lambda: remove_items(conn, o), lambda: add_items(conn, o, (1, "12.00")))
    step(lambda: remove_items(conn, o))
    step(lambda: add_items(conn, o, (3, "4.50")))
    step(lambda: set_order(conn, o, "status = 'confirmed'"))

    o = order("emptied_then_cancelled", cities["emptied"])
    step(lambda: add_items(conn, o, (1, "9.90")))
    step(lambda: remove_items(conn, o))
    step(lambda: set_order(conn, o, "status = 'cancelled', cancel_reason = 'changed my mind'"))

    o = order("emptied_then_refilled")
    step(lambda: add_items(conn, o, (1, "9.90")))
    step(lambda: remove_items(conn, o))
    step(lambda: set_order(conn, o, "tip = 2.00"))
    step(lambda: add_items(conn, o, (2, "4.50")))

    o = order("never_had_items")
    step(lambda: set_order(conn, o, "status = 'confirmed'"))
    step(lambda: set_order(conn, o, "tip = 5.00"))
    step(lambda: set_order(conn, o, "status = 'cancelled', cancel_reason = 'empty cart'"))

    o = order("items_one_statement_at_a_time")
    step(lambda: add_items(conn, o, (1, "9.90")), lambda: add_items(conn, o, (1, "4.50")))

    o = order("full_lifecycle")
    step(lambda: add_items(conn, o, (1, "9.90")))
    step(lambda: pay(conn, o, "authorized"))
    step(lambda: pay(conn, o, "captured"))
    for status in FORWARD[1:]:
        step(functools.partial(set_order, conn, o, "status = %(s)s", s=status))
    step(lambda: set_order(conn, o, "tip = 4.00, promised_at = promised_at + interval '10 minutes'"))
    step(lambda: pay(conn, o, "refunded"))

    o = order("payment_failed")
    step(lambda: add_items(conn, o, (1, "9.90")))
    step(lambda: pay(conn, o, "failed"))

    o = order("status_moves_back")
    step(lambda: add_items(conn, o, (1, "9.90")))
    step(lambda: set_order(conn, o, "status = 'confirmed'"))
    step(lambda: set_order(conn, o, "status = 'placed'"))
    step(lambda: set_order(conn, o, "status = 'confirmed'"))

    o = order("changes_analytics_does_not_see")
    step(lambda: add_items(conn, o, (1, "9.90")))
    time.sleep(0.01)  # so the invisible changes' updated_at is a later millisecond than the placement's
    step(
        lambda: set_order(conn, o, "special_instructions = 'ring twice', delivery_address_id = gen_random_uuid()"),
        lambda: set_order(conn, o, "status = status, updated_at = now() + interval '1 minute'"),
        lambda: first_item(conn, o, "customizations = %s, name = 'Pho ga'", Jsonb({"spicy": True})),
    )

    o = order("several_kinds_in_one_statement")
    step(lambda: add_items(conn, o, (1, "9.90")))
    step(lambda: set_order(conn, o, "status = 'cancelled', cancel_reason = 'late', tip = 0"))

    o = order("confirmed_before_its_items")
    step(lambda: set_order(conn, o, "status = 'confirmed'"))
    step(lambda: add_items(conn, o, (1, "9.90")))

    source, target = order("item_moved_from"), order("item_moved_to")
    step(lambda: add_items(conn, source, (1, "9.90"), (2, "4.50")))
    step(
        lambda: conn.execute(
            "UPDATE order_service.order_items SET order_id = %s WHERE order_id = %s AND quantity = 2",
            (target, source),
        )
    )

    order("inserted_with_items", item_count=2, subtotal="9.00")
    return ids


def edit_items_concurrently(db: str, order_id: uuid.UUID, rounds: int) -> int:
    """Two connections at once, each adding an item and deleting it again, one statement per transaction;
    returns the number of statements (each changes the item count by one)."""
    start = threading.Barrier(2)

    def editor() -> None:
        with psycopg.connect(db, autocommit=True) as conn:
            start.wait()
            for _ in range(rounds):
                row = conn.execute(
                    "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price) "
                    "VALUES (%s, gen_random_uuid(), 'Pho bo', 1, 9.90) RETURNING id",
                    (order_id,),
                ).fetchone()
                assert row is not None
                conn.execute("DELETE FROM order_service.order_items WHERE id = %s", (row[0],))

    in_threads(editor, editor)
    return 2 * 2 * rounds


# --- the run through relay, Kafka and Pinot -----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    ingested: Ingested
    cities: dict[str, str]
    scenarios: dict[str, uuid.UUID]
    concurrent: tuple[uuid.UUID, int]  # the order two connections edited, and their statements
    walk: list[Transaction]

    def events(self, order_id: uuid.UUID) -> list[tuple]:
        """The order's (event type, status, item count) history in Pinot, in publish order."""
        rows = self.ingested.pinot_rows(
            "SELECT outbox_position, event_type, status, item_count FROM order_events "
            "WHERE order_id = %(id)s ORDER BY outbox_position LIMIT 1000",
            id=str(order_id),
        )
        return [tuple(row[1:]) for row in rows]

    def scenario(self, name: str) -> list[tuple]:
        return self.events(self.scenarios[name])

    def pinot_order(self, order_id: uuid.UUID) -> tuple | None:
        rows = self.ingested.pinot_rows(
            f"SELECT {', '.join(PINOT_COLUMNS)} FROM orders WHERE order_id = %(id)s LIMIT 2", id=str(order_id)
        )
        assert len(rows) <= 1
        return tuple(rows[0]) if rows else None

    def pg_order(self, order_id: uuid.UUID) -> tuple:
        [(payload,)] = self.ingested.pg(
            "SELECT order_service.order_payload(o) FROM order_service.orders o WHERE id = %s", order_id
        )
        return pinot_values(payload)


def latest_positions(db: str) -> tuple[int, int]:
    """How many orders the outbox holds events of, and the sum of each one's latest position: what Pinot's
    upsert table `orders` shows once it has applied every event (the order ledger's entries aside)."""
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(position), 0) FROM (SELECT max(position) AS position "
            "FROM order_service.outbox WHERE aggregate_type = 'order' GROUP BY aggregate_id) latest"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture(scope="module")
def run(services: Services) -> Iterator[Run]:
    with scratch_database(services.database_url, "semantics", migrated=True) as db:
        apply(services.settings())
        suffix = uuid.uuid4().hex[:6]
        cities = {role: f"{role.title()}-{suffix}" for role in ("scenarios", "funnel", "emptied", "walk")}
        start = datetime.now(UTC)
        with psycopg.connect(db) as conn:
            scenarios = run_scenarios(conn, cities)
            concurrent = insert_order(conn, cities["scenarios"])
            conn.commit()
        statements = edit_items_concurrently(db, concurrent, rounds=10)
        walked = random_walk(db, cities["walk"])
        expected_events, _ = outbox_counts(db, list(cities.values()))
        latest = latest_positions(db)

        relay = RelayProcess(services, db)
        try:
            wait_until(lambda: backlog(db) == 0, 120, what="the relay to drain the outbox")
            cursor = broker_connection(services.pinot_broker_url).cursor()
            until = datetime.now(UTC) + timedelta(hours=1)
            ingested = Ingested(db, list(cities.values()), start - timedelta(hours=1), until, cursor)

            def ingested_all() -> bool:
                [[events]] = ingested.pinot_rows(
                    f"SELECT COUNT(*) FROM order_events WHERE city IN ({ingested.city_list})"
                )
                [[orders, positions]] = ingested.pinot_rows(
                    f"SELECT COUNT(*), SUM(outbox_position) FROM orders WHERE city IN ({ingested.city_list})"
                )
                return (events, orders, positions) == (expected_events, *latest)

            wait_until(ingested_all, 180, what="Pinot to ingest every order event exactly once")
            yield Run(ingested, cities, scenarios, (concurrent, statements), walked)
        finally:
            relay.kill()


# --- one test per row of the semantics table (docs/events.md) ----------------------------------------------


def test_items_replaced_before_confirmation_place_the_order_once(run: Run) -> None:
    assert run.scenario("replaced_before_confirmation") == [
        ("OrderPlaced", "placed", 3),
        ("OrderUpdated", "placed", 0),  # the items removed, then the new ones, in one transaction
        ("OrderUpdated", "placed", 1),
        ("OrderUpdated", "placed", 0),
        ("OrderUpdated", "placed", 3),
        ("OrderStatusChanged", "confirmed", 3),
    ]
    funnel = q(run.ingested, "funnel", city=run.cities["funnel"])
    assert sorted(tuple(row) for row in funnel) == [("confirmed", 1), ("placed", 1)]


def test_an_emptied_order_keeps_emitting_and_pinot_sees_it_cancelled(run: Run) -> None:
    order_id = run.scenarios["emptied_then_cancelled"]
    assert run.scenario("emptied_then_cancelled") == [
        ("OrderPlaced", "placed", 1),
        ("OrderUpdated", "placed", 0),
        ("OrderCancelled", "cancelled", 0),
    ]
    assert run.pinot_order(order_id) == run.pg_order(order_id)
    assert run.pg_order(order_id)[PINOT_COLUMNS.index("status")] == "cancelled"
    assert q(run.ingested, "active_orders", city=run.cities["emptied"]) == []


def test_an_emptied_order_refilled_is_updated_not_placed_again(run: Run) -> None:
    assert run.scenario("emptied_then_refilled") == [
        ("OrderPlaced", "placed", 1),
        ("OrderUpdated", "placed", 0),
        ("OrderUpdated", "placed", 0),  # the tip of an order with no items
        ("OrderUpdated", "placed", 2),
    ]


def test_an_order_that_never_had_items_stays_invisible(run: Run) -> None:
    assert run.scenario("never_had_items") == []
    assert run.pinot_order(run.scenarios["never_had_items"]) is None


def test_items_added_one_statement_at_a_time(run: Run) -> None:
    assert run.scenario("items_one_statement_at_a_time") == [
        ("OrderPlaced", "placed", 1),
        ("OrderUpdated", "placed", 2),
    ]


def test_status_and_payment_changes_each_have_their_kind(run: Run) -> None:
    assert [kind for kind, *_ in run.scenario("full_lifecycle")] == [
        "OrderPlaced",
        "OrderUpdated",  # payment authorized
        "PaymentCaptured",
        *["OrderStatusChanged"] * (len(FORWARD) - 1),
        "OrderUpdated",  # tip and promised time
        "PaymentRefunded",
    ]
    assert [kind for kind, *_ in run.scenario("payment_failed")] == ["OrderPlaced", "OrderUpdated"]
    assert run.scenario("status_moves_back") == [
        ("OrderPlaced", "placed", 1),
        ("OrderStatusChanged", "confirmed", 1),
        ("OrderStatusChanged", "placed", 1),
        ("OrderStatusChanged", "confirmed", 1),
    ]
    assert run.scenario("several_kinds_in_one_statement") == [
        ("OrderPlaced", "placed", 1),
        ("OrderCancelled", "cancelled", 1),
    ]


def test_changes_analytics_does_not_see_write_nothing(run: Run) -> None:
    assert run.scenario("changes_analytics_does_not_see") == [("OrderPlaced", "placed", 1)]


def test_an_order_placed_after_a_status_change_carries_that_status(run: Run) -> None:
    assert run.scenario("confirmed_before_its_items") == [("OrderPlaced", "confirmed", 1)]


def test_an_item_moved_between_orders_updates_one_and_places_the_other(run: Run) -> None:
    assert run.scenario("item_moved_from") == [("OrderPlaced", "placed", 3), ("OrderUpdated", "placed", 1)]
    assert run.scenario("item_moved_to") == [("OrderPlaced", "placed", 2)]


def test_an_order_inserted_with_items_is_placed_by_its_insert(run: Run) -> None:
    assert run.scenario("inserted_with_items") == [("OrderPlaced", "placed", 2)]


def test_every_scenario_order_in_pinot_equals_postgresql(run: Run) -> None:
    for name, order_id in run.scenarios.items():
        pinot, pg = run.pinot_order(order_id), run.pg_order(order_id)
        if name == "never_had_items":
            assert pinot is None
        elif name == "changes_analytics_does_not_see":
            # The last change moved PostgreSQL's updated_at and nothing analytics sees: Pinot keeps the
            # updated_at of the last event.
            assert pinot is not None and pinot[:-1] == pg[:-1] and pinot[-1] < pg[-1]
        else:
            assert pinot == pg, name


def test_concurrent_item_edits_from_two_connections(run: Run) -> None:
    order_id, statements = run.concurrent
    events = run.events(order_id)
    assert [kind for kind, *_ in events] == ["OrderPlaced"] + ["OrderUpdated"] * (statements - 1)
    counts = [item_count for *_, item_count in events]
    assert all(abs(after - before) == 1 for before, after in itertools.pairwise(counts)), counts
    assert run.pinot_order(order_id) == run.pg_order(order_id)


# --- the random walk: Pinot holds exactly what the semantics predict ----------------------------------------


def test_random_walk_pinot_orders_equal_postgresql_column_by_column(run: Run) -> None:
    predicted = predicted_events(run.walk)
    final = run.ingested.pg(
        "SELECT id::text, order_service.order_payload(o) FROM order_service.orders o WHERE city = %s",
        run.cities["walk"],
    )
    # Every column as PostgreSQL has it, but updated_at as of the last change analytics sees: a transaction
    # changing no payload column (each walk transaction at least bumps a counter) moves it, and is no event.
    truth = {
        order_id: pinot_values({**payload, "updated_at": predicted[order_id][-1][1]["updated_at"]})
        for order_id, payload in final
        if predicted.get(order_id)
    }
    rows = run.ingested.pinot_rows(
        f"SELECT {', '.join(PINOT_COLUMNS)} FROM orders WHERE city = %(city)s LIMIT 100000", city=run.cities["walk"]
    )
    assert 0 < len(truth) < len(final) == WALK_ORDERS, "some walked orders never had items"
    assert {row[0]: tuple(row) for row in rows} == truth


def test_random_walk_order_events_are_exactly_the_predicted_ones(run: Run) -> None:
    rows = run.ingested.pinot_rows(
        f"SELECT outbox_position, event_type, {', '.join(PINOT_COLUMNS)} FROM order_events "
        "WHERE city = %(city)s ORDER BY outbox_position LIMIT 1000000",
        city=run.cities["walk"],
    )
    published: dict[str, list[tuple]] = defaultdict(list)
    for _, event_type, *values in rows:
        published[values[0]].append((event_type, *values))
    expected = {
        order_id: [(kind, *pinot_values(payload)) for kind, payload in events]
        for order_id, events in predicted_events(run.walk).items()
        if events
    }
    assert published == expected
    kinds = {kind for events in expected.values() for kind, *_ in events}
    assert kinds == {
        "OrderPlaced", "OrderUpdated", "OrderStatusChanged", "OrderCancelled", "PaymentCaptured", "PaymentRefunded"
    }, "the walk reaches every kind of order event"  # fmt: skip
