"""Set-based order workloads for relay tests and benchmarks: many real outbox events, few statements.

Each order goes through placed -> confirmed -> preparing -> ready_for_pickup -> delivered, one statement
per step for all orders, so the triggers write one order event per order per step (5 per order, in order),
and one order ledger entry at its placement (status steps short of a cancellation change no ledger fact).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg

STEPS = ("confirmed", "preparing", "ready_for_pickup", "delivered")
EVENTS_PER_ORDER = 1 + len(STEPS)  # order events (aggregate type `order`, the orders topic)
ROWS_PER_ORDER = EVENTS_PER_ORDER + 1  # outbox rows, the placement's ledger entry included: the relay's backlog

PLACE_ORDERS = """
WITH placed AS (
    INSERT INTO order_service.orders
        (id, user_id, restaurant_id, restaurant_name, city, cuisine, delivery_fee, tip, delivery_location,
         promised_at)
    SELECT id, gen_random_uuid(), gen_random_uuid(), 'Bench Bistro', %(city)s, 'thai', 2.49, %(tip)s,
           'SRID=4326;POINT(13.40 52.52)', now() + interval '35 minutes'
    FROM unnest(%(ids)s::uuid[]) AS id
    RETURNING id
)
INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price, customizations)
SELECT id, gen_random_uuid(), 'Pad thai', %(quantity)s, 11.25, '{"spice": "medium"}' FROM placed
"""


def insert_orders(
    conn: psycopg.Connection, ids: Sequence[uuid.UUID | str], city: str, tip: float = 1.00, quantity: int = 2
) -> None:
    """Insert orders of these ids with items in one statement pair: one OrderPlaced and one ledger entry each."""
    conn.execute(PLACE_ORDERS, {"ids": list(ids), "city": city, "tip": tip, "quantity": quantity})


def place_orders(conn: psycopg.Connection, count: int, city: str = "Berlin") -> list[uuid.UUID]:
    """Insert `count` new orders (insert_orders); returns their ids."""
    ids = [uuid.uuid4() for _ in range(count)]
    insert_orders(conn, ids, city)
    return ids


def advance(conn: psycopg.Connection, ids: list[uuid.UUID], status: str) -> None:
    """One statement moving every order to `status`: one OrderStatusChanged each."""
    conn.execute("UPDATE order_service.orders SET status = %s WHERE id = ANY(%s)", (status, ids))


def full_lifecycle(database_url: str, orders: int, chunk: int = 10_000) -> list[uuid.UUID]:
    """`orders` orders through every step, committed chunk by chunk; EVENTS_PER_ORDER order events each
    (ROWS_PER_ORDER outbox rows)."""
    all_ids: list[uuid.UUID] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for start in range(0, orders, chunk):
            with conn.transaction():
                ids = place_orders(conn, min(chunk, orders - start))
                for status in STEPS:
                    advance(conn, ids, status)
            all_ids.extend(ids)
    return all_ids


def poisoned_order(conn: psycopg.Connection) -> uuid.UUID:
    """An order whose OrderPlaced breaks the contract (item_count is no longer an int), as a buggy trigger
    would write it, followed by a valid event of the same order that must wait behind it. Its ledger entry
    stays valid (a stream of its own)."""
    (order_id,) = place_orders(conn, 1)
    conn.execute(
        "UPDATE order_service.outbox SET payload = jsonb_set(payload, '{item_count}', '\"many\"') "
        "WHERE aggregate_type = 'order' AND aggregate_id = %s",
        (order_id,),
    )
    advance(conn, [order_id], "confirmed")
    return order_id
