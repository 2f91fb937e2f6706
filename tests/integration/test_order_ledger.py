"""The order ledger (migration 0015, docs/events.md): summed per order and dimensions, the entries the triggers
and the backfill write equal the order's current facts, whatever sequence of business changes led there, and
an order is counted once however often it is snapshotted."""

from __future__ import annotations

import random
import threading
from typing import Any

import psycopg
import pytest

POINT = "SRID=4326;POINT(13.4 52.5)"
NEW_ORDERS = """
INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, delivery_location)
SELECT gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', %s FROM generate_series(1, %s)
RETURNING id
"""
ADD_ITEM = """
INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price)
SELECT id, gen_random_uuid(), 'Pho bo', %s, %s FROM unnest(%s::uuid[]) AS id
"""
FACTS = """
SELECT id::text, restaurant_id::text, restaurant_name, city, cuisine,
       (extract(epoch FROM date_trunc('milliseconds', placed_at)) * 1000)::bigint,
       1, (status = 'cancelled')::int,
       CASE WHEN status = 'cancelled' THEN 0 ELSE (total * 100)::bigint END,
       CASE WHEN status = 'cancelled' THEN 0 ELSE (subtotal * 100)::bigint END,
       CASE WHEN status = 'cancelled' THEN 0 ELSE item_count END
FROM order_service.orders o WHERE order_service.is_visible(o)
"""
# Per order and dimensions, the sums of its entries; a group that sums to nothing is a state that left.
LEDGER = """
SELECT aggregate_id::text, payload->>'restaurant_id', payload->>'restaurant_name', payload->>'city',
       payload->>'cuisine',
       (extract(epoch FROM date_trunc('milliseconds', (payload->>'placed_at')::timestamptz)) * 1000)::bigint,
       sum((payload->>'orders')::int)::int, sum((payload->>'cancelled')::int)::int,
       sum((payload->>'gmv_cents')::bigint)::bigint, sum((payload->>'subtotal_cents')::bigint)::bigint,
       sum((payload->>'items')::int)::int
FROM order_service.outbox WHERE aggregate_type = 'order_ledger'
GROUP BY 1, 2, 3, 4, 5, 6
HAVING (sum((payload->>'orders')::int), sum((payload->>'cancelled')::int), sum((payload->>'gmv_cents')::bigint),
        sum((payload->>'subtotal_cents')::bigint), sum((payload->>'items')::int)) <> (0, 0, 0, 0, 0)
"""
STATUSES = ("confirmed", "preparing", "ready_for_pickup", "picked_up", "delivered", "cancelled")


def assert_ledger_equals_orders(conn: psycopg.Connection[Any]) -> None:
    facts = sorted(tuple(row) for row in conn.execute(FACTS))
    ledger = sorted(tuple(row) for row in conn.execute(LEDGER))
    assert ledger == facts


def new_orders(conn: psycopg.Connection[Any], count: int) -> list[Any]:
    return [row[0] for row in conn.execute(NEW_ORDERS, (POINT, count))]


def change(conn: psycopg.Connection[Any], rng: random.Random, ids: list[Any]) -> None:
    """One random business statement on a random subset of the orders."""
    some = rng.sample(ids, rng.randint(1, len(ids)))
    match rng.choice(("item", "item", "drop items", "tip", "status", "status", "rename", "move", "nothing")):
        case "item":
            conn.execute(ADD_ITEM, (rng.randint(1, 3), rng.choice((4.5, 9.9, 12.25)), some))
        case "drop items":
            conn.execute("DELETE FROM order_service.order_items WHERE order_id = ANY(%s)", (some,))
        case "tip":
            conn.execute("UPDATE order_service.orders SET tip = %s WHERE id = ANY(%s)", (rng.choice((0, 1, 2.5)), some))
        case "status":
            conn.execute("UPDATE order_service.orders SET status = %s WHERE id = ANY(%s)", (rng.choice(STATUSES), some))
        case "rename":  # the restaurant snapshot changes: the old dimensions leave, the new ones arrive
            conn.execute(
                "UPDATE order_service.orders SET restaurant_name = %s WHERE id = ANY(%s)",
                (rng.choice(("Pho 24", "Pho 25")), some),
            )
        case "move":
            conn.execute(
                "UPDATE order_service.orders SET city = %s, placed_at = placed_at - interval '2 hours' "
                "WHERE id = ANY(%s)",
                (rng.choice(("Berlin", "Hamburg")), some),
            )
        case "nothing":  # updated_at alone: no entry
            conn.execute("UPDATE order_service.orders SET updated_at = now() WHERE id = ANY(%s)", (some,))


@pytest.mark.parametrize("seed", range(6))
def test_random_business_changes_keep_the_ledger_equal_to_the_orders(db: str, seed: int) -> None:
    rng = random.Random(seed)
    with psycopg.connect(db) as conn:
        ids = new_orders(conn, 6)
        conn.commit()
        for _ in range(40):
            for _ in range(rng.randint(1, 3)):  # one to three statements per transaction
                change(conn, rng, ids)
            if rng.random() < 0.15:
                conn.rollback()  # a rolled-back change writes no entry
            else:
                conn.commit()
            assert_ledger_equals_orders(conn)
        conn.commit()
        assert conn.execute("SELECT count(*) FROM order_service.orders_outside_ledger").fetchone() == (0,)


def test_an_order_inserted_already_visible_is_counted_by_its_insert(db: str) -> None:
    """Not what the order service does (it inserts an order without items), but a visible insert is placed."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, "
            "delivery_location, item_count, subtotal) "
            "VALUES (gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', %s, 2, 19.80)",
            (POINT,),
        )
        assert_ledger_equals_orders(conn)
        kinds = conn.execute("SELECT aggregate_type, event_type FROM order_service.outbox ORDER BY position").fetchall()
        assert sorted(kinds) == [("order", "OrderPlaced"), ("order_ledger", "OrderLedgerEntry")]


def test_an_order_the_ledger_never_counted_is_counted_once(db: str) -> None:
    """Orders visible before the ledger existed (migration 0015 lists them): a trigger's entry or a backfill
    snapshot counts the whole state once; snapshots of counted orders add nothing."""
    with psycopg.connect(db, autocommit=True) as conn:
        changed, snapshotted, untouched = ids = new_orders(conn, 3)
        conn.execute(ADD_ITEM, (2, 9.9, ids))
        conn.execute("UPDATE order_service.orders SET status = 'confirmed' WHERE id = ANY(%s)", (ids,))
        # The pipeline arrives now: no entry was ever published, as migration 0015 finds such orders.
        conn.execute("DELETE FROM order_service.outbox")
        conn.execute("INSERT INTO order_service.orders_outside_ledger SELECT unnest(%s::uuid[])", (ids,))

        conn.execute("UPDATE order_service.orders SET updated_at = now() WHERE id = ANY(%s)", (ids,))  # no event
        assert conn.execute("SELECT count(*) FROM order_service.orders_outside_ledger").fetchone() == (3,)
        conn.execute("UPDATE order_service.orders SET tip = 3 WHERE id = %s", (changed,))
        conn.execute("SELECT order_service.emit_order_snapshots(%s)", ([changed, snapshotted],))
        conn.execute("SELECT order_service.emit_order_snapshots(%s)", ([changed, snapshotted],))  # a re-run
        remaining = [row[0] for row in conn.execute("SELECT order_id FROM order_service.orders_outside_ledger")]
        assert remaining == [untouched]
        conn.execute("SELECT order_service.emit_order_snapshots(%s)", ([untouched],))
        assert_ledger_equals_orders(conn)
        entries = conn.execute(
            "SELECT count(*) FROM order_service.outbox WHERE aggregate_type = 'order_ledger'"
        ).fetchone()
        assert entries == (3,), "one entry per order: its whole state, never a second one"


def test_a_snapshot_racing_a_writer_counts_the_order_once(db: str) -> None:
    """The writer holds the order's row lock when the backfill snapshots it: the snapshot waits, then sees that
    the writer's own entry counted the order."""
    with psycopg.connect(db, autocommit=True) as setup:
        (order,) = new_orders(setup, 1)
        setup.execute(ADD_ITEM, (1, 12.25, [order]))
        setup.execute("DELETE FROM order_service.outbox")
        setup.execute("INSERT INTO order_service.orders_outside_ledger VALUES (%s)", (order,))
    with psycopg.connect(db) as writer:
        writer.execute("UPDATE order_service.orders SET status = 'cancelled' WHERE id = %s", (order,))
        snapshot = threading.Thread(
            target=lambda: psycopg.connect(db, autocommit=True).execute(
                "SELECT order_service.emit_order_snapshots(%s)", ([order],)
            )
        )
        snapshot.start()
        snapshot.join(timeout=1)
        assert snapshot.is_alive(), "the snapshot waits for the writer's row lock"
        writer.commit()
        snapshot.join(timeout=30)
        assert_ledger_equals_orders(writer)
        entries = writer.execute(
            "SELECT count(*) FROM order_service.outbox WHERE aggregate_type = 'order_ledger'"
        ).fetchone()
        assert entries == (1,)
