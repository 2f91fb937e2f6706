"""The outbox triggers: which business changes write which outbox rows, with which payloads."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pipeline.privacy.coarsening import coarse_coordinate
from tests.support.data_keys import hold_keys

PLACED_AT = datetime(2024, 5, 17, 18, 30, 0, 123456, tzinfo=UTC)
PROMISED_AT = PLACED_AT + timedelta(minutes=35)
DROP_OFF = (52.520008, 13.404954)  # lat, lon
PUBLISHED_DROP_OFF = tuple(map(coarse_coordinate, DROP_OFF))  # migration 0027's cell: (52.52, 13.405)
PICKUP = (52.5125, 13.3900)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(db, row_factory=dict_row) as connection:
        yield connection


def point(lat_lon: tuple[float, float]) -> str:
    return f"SRID=4326;POINT({lat_lon[1]} {lat_lon[0]})"


def outbox(conn: psycopg.Connection[Any], schema: str = "order_service") -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT * FROM {schema}.outbox ORDER BY position")
        return cur.fetchall()


def order_events(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The order outbox's order events; the ledger entries beside them are test_order_ledger.py's."""
    return [row for row in outbox(conn) if row["aggregate_type"] == "order"]


def insert_order(conn: psycopg.Connection[Any], **overrides: Any) -> uuid.UUID:
    values = {
        "user_id": uuid.uuid4(),
        "restaurant_id": uuid.uuid4(),
        "restaurant_name": "Pho 24",
        "city": "Berlin",
        "cuisine": "vietnamese",
        "delivery_fee": "2.49",
        "tip": "1.10",
        "delivery_location": point(DROP_OFF),
        "placed_at": PLACED_AT,
        "promised_at": PROMISED_AT,
        **overrides,
    }
    columns = ", ".join(values)
    placeholders = ", ".join(f"%({name})s" for name in values)
    row = conn.execute(
        f"INSERT INTO order_service.orders ({columns}) VALUES ({placeholders}) RETURNING id", values
    ).fetchone()
    assert row is not None
    return row["id"] if isinstance(row, dict) else row[0]


def insert_items(conn: psycopg.Connection[Any], order_id: uuid.UUID, *lines: tuple[int, str]) -> None:
    """One INSERT statement for all the (quantity, unit price) lines, as the order service does."""
    conn.execute(
        "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price, "
        "customizations) SELECT %s, gen_random_uuid(), 'Pho bo', q, p, '{\"size\": \"large\"}' "
        "FROM unnest(%s::int[], %s::numeric[]) AS line(q, p)",
        (order_id, [quantity for quantity, _ in lines], [price for _, price in lines]),
    )


def test_order_placed_carries_the_items_and_exact_money(conn: psycopg.Connection[Any]) -> None:
    user_id, restaurant_id = uuid.uuid4(), uuid.uuid4()
    order_id = insert_order(conn, user_id=user_id, restaurant_id=restaurant_id)
    assert outbox(conn) == [], "an order without items is not placed yet"
    insert_items(conn, order_id, (2, "10.10"), (1, "0.30"))
    conn.commit()

    [row] = order_events(conn)
    updated_at = conn.execute("SELECT updated_at FROM order_service.orders").fetchone()["updated_at"]
    # the customer's pseudonym, not their id (migration 0027)
    pseudonym = conn.execute(
        "SELECT pseudonym FROM order_service.customer_pseudonyms WHERE user_id = %s", (user_id,)
    ).fetchone()["pseudonym"]
    assert row["aggregate_type"] == "order"
    assert row["aggregate_id"] == order_id
    assert row["event_type"] == "OrderPlaced"
    assert row["schema_version"] == 2
    assert isinstance(row["event_id"], uuid.UUID)
    assert row["occurred_at"].tzinfo is not None
    payload = row["payload"]
    timestamps = ("placed_at", "promised_at", "updated_at")  # compared as instants below
    assert {key: value for key, value in payload.items() if key not in timestamps} == {
        "order_id": str(order_id),
        "customer_pseudonym": str(pseudonym),
        "restaurant_id": str(restaurant_id),
        "restaurant_name": "Pho 24",
        "city": "Berlin",
        "cuisine": "vietnamese",
        "status": "placed",
        "item_count": 3,
        "subtotal_cents": 2050,
        "delivery_fee_cents": 249,
        "tip_cents": 110,
        "total_cents": 2409,
        "currency": "USD",
        "payment_status": None,
        "cancel_reason": None,
        "delivery_lat": PUBLISHED_DROP_OFF[0],
        "delivery_lon": PUBLISHED_DROP_OFF[1],
    }
    # Timestamps are JSON text carrying their offset, and name the same instant as the column.
    for key, expected in zip(timestamps, (PLACED_AT, PROMISED_AT, updated_at), strict=True):
        parsed = datetime.fromisoformat(payload[key])
        assert parsed.tzinfo is not None and parsed == expected


def test_each_order_change_writes_one_event_of_its_kind(conn: psycopg.Connection[Any]) -> None:
    order_id = insert_order(conn)
    insert_items(conn, order_id, (1, "12.00"))
    steps = [
        (
            "INSERT INTO order_service.payments (order_id, amount, method, status) "
            "VALUES (%(id)s, 15.59, 'card', 'authorized')",
            "OrderUpdated",
        ),
        (
            "UPDATE order_service.payments SET status = 'captured', captured_at = now() WHERE order_id = %(id)s",
            "PaymentCaptured",
        ),
        ("UPDATE order_service.orders SET status = 'confirmed' WHERE id = %(id)s", "OrderStatusChanged"),
        ("UPDATE order_service.orders SET tip = 3.00 WHERE id = %(id)s", "OrderUpdated"),
        (
            "UPDATE order_service.orders SET status = 'cancelled', cancel_reason = 'restaurant closed' "
            "WHERE id = %(id)s",
            "OrderCancelled",
        ),
        (
            "UPDATE order_service.payments SET status = 'refunded', refunded_at = now() WHERE order_id = %(id)s",
            "PaymentRefunded",
        ),
    ]
    for statement, _ in steps:
        conn.execute(statement, {"id": order_id})
    conn.commit()

    rows = order_events(conn)
    assert [row["event_type"] for row in rows] == ["OrderPlaced"] + [event for _, event in steps]
    last = rows[-1]["payload"]
    assert (last["status"], last["payment_status"], last["cancel_reason"]) == (
        "cancelled",
        "refunded",
        "restaurant closed",
    )
    assert (last["subtotal_cents"], last["tip_cents"], last["total_cents"]) == (1200, 300, 1749)
    assert len({row["txid"] for row in rows}) == 1
    history = conn.execute(
        "SELECT from_status, to_status FROM order_service.order_status_history ORDER BY changed_at"
    ).fetchall()
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "placed"),
        ("placed", "confirmed"),
        ("confirmed", "cancelled"),
    ]


def test_changes_analytics_does_not_see_write_nothing(conn: psycopg.Connection[Any]) -> None:
    order_id = insert_order(conn)
    insert_items(conn, order_id, (1, "9.99"))
    conn.commit()
    before = len(outbox(conn))

    conn.execute("UPDATE order_service.orders SET updated_at = now() + interval '1 minute'")
    conn.execute("UPDATE order_service.orders SET status = status, special_instructions = 'ring twice'")
    conn.execute(
        "UPDATE order_service.order_items SET customizations = '{\"spicy\": true}', special_instructions = 'no onions'"
    )
    conn.execute("UPDATE order_service.orders SET delivery_location = %s", (point(DROP_OFF),))
    conn.commit()

    assert len(outbox(conn)) == before
    customizations = conn.execute("SELECT customizations FROM order_service.order_items").fetchone()
    assert customizations["customizations"] == {"spicy": True}


def test_a_rolled_back_transaction_writes_nothing(conn: psycopg.Connection[Any]) -> None:
    order_id = insert_order(conn)
    insert_items(conn, order_id, (1, "5.00"))
    conn.execute("UPDATE order_service.orders SET status = 'confirmed'")
    assert len(order_events(conn)) == 2
    conn.rollback()
    assert outbox(conn) == []


def test_multi_row_statements_write_one_row_per_changed_order(conn: psycopg.Connection[Any]) -> None:
    orders = [insert_order(conn) for _ in range(3)]
    empty = insert_order(conn)
    # One statement adding items to three orders: one OrderPlaced each, each with its own totals.
    conn.execute(
        "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price) "
        "SELECT o, gen_random_uuid(), 'Banh mi', n, 4.25 FROM unnest(%s::uuid[]) WITH ORDINALITY AS t(o, n)",
        (orders,),
    )
    conn.commit()
    placed = order_events(conn)
    assert sorted(
        (r["aggregate_id"], r["payload"]["item_count"], r["payload"]["subtotal_cents"]) for r in placed
    ) == sorted([(orders[0], 1, 425), (orders[1], 2, 850), (orders[2], 3, 1275)])

    conn.execute("UPDATE order_service.orders SET status = 'confirmed' WHERE id = ANY(%s)", ([*orders[:2], empty],))
    conn.execute("UPDATE order_service.orders SET updated_at = now()")
    conn.commit()

    changed = order_events(conn)[len(placed) :]
    assert sorted(r["aggregate_id"] for r in changed) == sorted(orders[:2])
    assert {r["event_type"] for r in changed} == {"OrderStatusChanged"}
    assert len({r["txid"] for r in changed}) == 1


def test_one_notify_per_statement_and_none_without_events(db: str, conn: psycopg.Connection[Any]) -> None:
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN nibble_outbox")
        order_id = insert_order(conn)
        conn.commit()
        assert list(listener.notifies(timeout=0.5)) == [], "no event, no wake-up"

        insert_items(conn, order_id, (1, "5.00"))
        conn.commit()
        received = list(listener.notifies(timeout=2, stop_after=2))
    assert [(n.channel, n.payload) for n in received] == [("nibble_outbox", "order_service")]


def test_concurrent_writers_of_one_order_publish_in_commit_order(db: str) -> None:
    with psycopg.connect(db) as setup:
        order_id = insert_order(setup)
        insert_items(setup, order_id, (1, "1.00"))
        setup.commit()

    commit_lock = threading.Lock()
    committed: list[int] = []  # txids, in commit order
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(db) as conn:
                for _ in range(6):
                    if rng.random() < 0.5:
                        insert_items(conn, order_id, (1, "1.00"))
                    else:
                        conn.execute("UPDATE order_service.orders SET tip = tip + 0.01 WHERE id = %s", (order_id,))
                    txid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
                    time.sleep(rng.uniform(0, 0.02))
                    with commit_lock:  # so `committed` records the real commit order
                        conn.commit()
                        committed.append(txid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT position, txid::text::bigint FROM order_service.outbox "
            "WHERE aggregate_type = 'order' AND aggregate_id = %s AND event_type <> 'OrderPlaced' ORDER BY position",
            (order_id,),
        ).fetchall()
        item_count = conn.execute(
            "SELECT item_count, (SELECT sum(quantity) FROM order_service.order_items) FROM order_service.orders"
        ).fetchone()

    published_txids = [txid for _, txid in rows]
    assert published_txids == committed, "position order must be commit order"
    assert item_count[0] == item_count[1], "concurrent item inserts all counted"


def insert_delivery(conn: psycopg.Connection[Any]) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO driver_service.deliveries (order_id, restaurant_id, city, pickup_location, "
        "dropoff_location, promised_at) VALUES (gen_random_uuid(), gen_random_uuid(), 'Berlin', %s, %s, %s) "
        "RETURNING id",
        (point(PICKUP), point(DROP_OFF), PROMISED_AT),
    ).fetchone()
    return row["id"]


def insert_driver(conn: psycopg.Connection[Any]) -> uuid.UUID:
    hold_keys(conn)  # the driver's name is sealed (0023)
    row = conn.execute(
        "INSERT INTO driver_service.drivers (user_id, full_name, city, vehicle_type, status) "
        "VALUES (gen_random_uuid(), 'Dana', 'Berlin', 'scooter', 'available') RETURNING id"
    ).fetchone()
    return row["id"]


def test_delivery_lifecycle_events(conn: psycopg.Connection[Any]) -> None:
    driver_id = insert_driver(conn)
    delivery_id = insert_delivery(conn)
    cancelled_id = insert_delivery(conn)
    deliveries = "UPDATE driver_service.deliveries"
    steps = [
        f"{deliveries} SET driver_id = %(driver)s, status = 'assigned', assigned_at = now() WHERE id = %(id)s",
        f"{deliveries} SET status = 'picked_up', picked_up_at = now() WHERE id = %(id)s",
        f"{deliveries} SET updated_at = now() WHERE id = %(id)s",  # nothing analytics sees
        f"{deliveries} SET status = 'delivered', delivered_at = now(), distance_m = 2834.5 WHERE id = %(id)s",
        f"{deliveries} SET status = 'cancelled', cancelled_at = now() WHERE id = %(other)s",
    ]
    for statement in steps:
        conn.execute(statement, {"id": delivery_id, "other": cancelled_id, "driver": driver_id})
    conn.commit()

    rows = [row for row in outbox(conn, "driver_service") if row["aggregate_type"] == "delivery"]
    assert [(row["aggregate_id"], row["event_type"]) for row in rows] == [
        (delivery_id, "DeliveryCreated"),
        (cancelled_id, "DeliveryCreated"),
        (delivery_id, "DeliveryAssigned"),
        (delivery_id, "DeliveryPickedUp"),
        (delivery_id, "DeliveryCompleted"),
        (cancelled_id, "DeliveryCancelled"),
    ]
    created, completed = rows[0]["payload"], rows[4]["payload"]
    assert (created["pickup_lat"], created["pickup_lon"]) == PICKUP
    assert (created["dropoff_lat"], created["dropoff_lon"]) == PUBLISHED_DROP_OFF
    assert created["status"] == "pending" and created["driver_id"] is None and created["assigned_at"] is None
    assert datetime.fromisoformat(created["promised_at"]) == PROMISED_AT
    assert completed["driver_id"] == str(driver_id)
    assert completed["distance_m"] == 2834.5
    assert all(datetime.fromisoformat(completed[key]).tzinfo for key in ("assigned_at", "delivered_at"))
    assert set(completed) == {
        "delivery_id",
        "order_id",
        "driver_id",
        "restaurant_id",
        "city",
        "status",
        "pickup_lat",
        "pickup_lon",
        "dropoff_lat",
        "dropoff_lon",
        "distance_m",
        "created_at",
        "promised_at",
        "assigned_at",
        "picked_up_at",
        "delivered_at",
        "updated_at",
    }


def test_driver_dimension_events(conn: psycopg.Connection[Any]) -> None:
    driver_id = insert_driver(conn)
    conn.execute(
        "UPDATE driver_service.drivers SET current_location = %s, location_updated_at = now()",
        (point(PICKUP),),
    )
    conn.execute(
        "INSERT INTO driver_service.driver_location_pings (driver_id, location, recorded_at) VALUES (%s, %s, now())",
        (driver_id, point(PICKUP)),
    )
    conn.execute("UPDATE driver_service.drivers SET status = 'busy'")
    conn.execute("UPDATE driver_service.drivers SET vehicle_type = 'car'")
    conn.execute("UPDATE driver_service.drivers SET is_active = false, deleted_at = now()")
    conn.commit()

    rows = outbox(conn, "driver_service")
    assert [row["event_type"] for row in rows] == [
        "DriverRegistered",
        "DriverStatusChanged",
        "DriverUpdated",
        "DriverDeactivated",
    ]
    last = rows[-1]["payload"]
    updated_at = conn.execute("SELECT updated_at FROM driver_service.drivers").fetchone()["updated_at"]
    assert datetime.fromisoformat(last.pop("updated_at")) == updated_at
    assert last == {
        "driver_id": str(driver_id),
        "city": "Berlin",
        "vehicle_type": "car",
        "status": "busy",
        "is_active": False,
    }


def test_restaurant_dimension_events(conn: psycopg.Connection[Any]) -> None:
    restaurant_id = conn.execute(
        "INSERT INTO restaurant_service.restaurants (name, cuisine_types, line1, city, location, rating) "
        "VALUES ('Pho 24', ARRAY['vietnamese', 'noodles'], 'Torstr. 1', 'Berlin', %s, 4.5) RETURNING id",
        (point(PICKUP),),
    ).fetchone()["id"]
    menu_id = conn.execute(
        "INSERT INTO restaurant_service.menus (restaurant_id, name) VALUES (%s, 'Main') RETURNING id",
        (restaurant_id,),
    ).fetchone()["id"]
    conn.execute(
        "INSERT INTO restaurant_service.menu_items (menu_id, name, price, allergens, customization_options) "
        "VALUES (%s, 'Pho bo', 12.50, ARRAY['soy', 'gluten'], %s)",
        (menu_id, '{"size": [{"name": "large", "price_delta": "2.00"}]}'),
    )
    conn.execute("UPDATE restaurant_service.restaurants SET description = 'Noodle bar'")  # not analytics'
    conn.execute("UPDATE restaurant_service.restaurants SET rating = 4.6")
    conn.execute("UPDATE restaurant_service.restaurants SET deleted_at = now()")
    conn.commit()

    rows = outbox(conn, "restaurant_service")
    assert [row["event_type"] for row in rows] == [
        "RestaurantCreated",
        "RestaurantUpdated",
        "RestaurantDeactivated",
    ]
    created = rows[0]["payload"]
    assert datetime.fromisoformat(created.pop("updated_at")).tzinfo is not None
    assert created == {
        "restaurant_id": str(restaurant_id),
        "name": "Pho 24",
        "city": "Berlin",
        "cuisines": ["vietnamese", "noodles"],
        "lat": PICKUP[0],
        "lon": PICKUP[1],
        "rating": 4.5,
        "is_active": True,
        "prep_time_minutes": None,  # v2 (migration 0024): none set
    }
    assert (rows[1]["payload"]["rating"], rows[2]["payload"]["is_active"]) == (4.6, False)
    updated_at = conn.execute("SELECT updated_at FROM restaurant_service.restaurants").fetchone()["updated_at"]
    assert datetime.fromisoformat(rows[2]["payload"]["updated_at"]) == updated_at
    item = conn.execute(
        "SELECT allergens, customization_options #>> '{size,0,price_delta}' AS delta FROM restaurant_service.menu_items"
    ).fetchone()
    assert (item["allergens"], item["delta"]) == (["soy", "gluten"], "2.00")
