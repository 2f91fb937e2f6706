"""Analytics cannot forget or re-key an aggregate it has seen (Pinot's upsert tables have no deletes), so
the triggers of migration 0012 refuse such a DELETE or id change with one clear error (docs/events.md)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.data_keys import hold_keys

POINT = "SRID=4326;POINT(13.4 52.5)"
ORDER = (
    "INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, delivery_location) "
    "VALUES (gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', %s) RETURNING id"
)
ITEM = (
    "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price) "
    "VALUES (%s, gen_random_uuid(), 'Pho bo', 1, 9.90)"
)


def one(conn: psycopg.Connection[Any], statement: str, *params: Any) -> Any:
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return row[0]


def refused(conn: psycopg.Connection[Any], statement: str, *params: Any) -> psycopg.Error:
    with pytest.raises(psycopg.errors.RestrictViolation) as raised:
        conn.execute(statement, params)
    return raised.value


def test_an_order_that_was_visible_cannot_be_deleted_or_re_keyed(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        emptied = one(conn, ORDER, POINT)
        conn.execute(ITEM, (emptied,))
        conn.execute("DELETE FROM order_service.order_items WHERE order_id = %s", (emptied,))
        conn.execute("DELETE FROM order_service.order_status_history WHERE order_id = %s", (emptied,))

        error = refused(conn, "DELETE FROM order_service.orders WHERE id = %s", emptied)
        assert error.diag.message_primary == (
            f"order_service.orders: DELETE of order {emptied} refused: "
            "it is published to analytics, which cannot forget or re-key it"
        )
        assert error.diag.message_hint == "cancel the order instead"
        refused(conn, "UPDATE order_service.orders SET id = gen_random_uuid() WHERE id = %s", emptied)
        conn.execute("UPDATE order_service.orders SET id = id WHERE id = %s", (emptied,))  # the same id is fine

        never_visible = one(conn, ORDER, POINT)
        conn.execute("DELETE FROM order_service.order_status_history")  # its rows would block both
        conn.execute("UPDATE order_service.orders SET id = gen_random_uuid() WHERE id = %s", (never_visible,))
        assert conn.execute("DELETE FROM order_service.orders WHERE id <> %s", (emptied,)).rowcount == 1

        events = [
            row[0]
            for row in conn.execute(
                "SELECT event_type FROM order_service.outbox WHERE aggregate_type = 'order' ORDER BY position"
            )
        ]
        assert events == ["OrderPlaced", "OrderUpdated"]
        # nor a ledger entry: every outbox row is the emptied order's
        written = conn.execute("SELECT DISTINCT aggregate_id FROM order_service.outbox").fetchall()
        assert written == [(emptied,)], "the invisible order's id change and deletion wrote nothing"


def test_deliveries_drivers_and_restaurants_cannot_be_deleted_or_re_keyed(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        restaurant = one(
            conn,
            "INSERT INTO restaurant_service.restaurants (name, line1, city, location) "
            "VALUES ('Pho 24', 'Main St 1', 'Berlin', %s) RETURNING id",
            POINT,
        )
        driver = one(
            hold_keys(conn),
            "INSERT INTO driver_service.drivers (user_id, full_name, city, vehicle_type) "
            "VALUES (gen_random_uuid(), 'Ada', 'Berlin', 'bicycle') RETURNING id",
        )
        delivery = one(
            conn,
            "INSERT INTO driver_service.deliveries (order_id, restaurant_id, city, pickup_location, "
            "dropoff_location, promised_at) VALUES (gen_random_uuid(), %s, 'Berlin', %s, %s, now()) RETURNING id",
            restaurant,
            POINT,
            POINT,
        )

        for table, row_id, hint in [
            ("restaurant_service.restaurants", restaurant, "set deleted_at instead"),
            ("driver_service.drivers", driver, "set deleted_at instead"),
            ("driver_service.deliveries", delivery, "cancel the delivery instead"),
        ]:
            error = refused(conn, f"DELETE FROM {table} WHERE id = %s", row_id)
            assert (error.diag.message_primary or "").startswith(f"{table}: DELETE of ")
            assert error.diag.message_hint == hint
            error = refused(conn, f"UPDATE {table} SET id = gen_random_uuid() WHERE id = %s", row_id)
            assert (error.diag.message_primary or "").startswith(f"{table}: UPDATE of ")
            assert one(conn, f"SELECT count(*) FROM {table}") == 1
