"""Single rows the security tests write: an order placed by order_service's own login, and a restaurant with
poison events in its dead letters for the tools (dlq, backfill) to work on."""

from __future__ import annotations

import uuid

import psycopg


def place_order(orders: psycopg.Connection) -> uuid.UUID:
    """One order in Berlin, as the order_service login writes it (its schema on the search path)."""
    return orders.execute(
        "INSERT INTO orders (user_id, restaurant_id, restaurant_name, city, cuisine, delivery_location) "
        "VALUES (gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', "
        "'SRID=4326;POINT(13.4 52.5)') RETURNING id"
    ).fetchone()[0]


def restaurant_with_dead_letters(owner: psycopg.Connection, positions: list[int]) -> None:
    """A restaurant (for backfill to snapshot) and a poison event at each outbox position in its dead letters,
    written as the database owner."""
    owner.execute(
        "INSERT INTO restaurant_service.restaurants (name, line1, city, location) "
        "VALUES ('Pho 24', 'Main street 1', 'Berlin', 'SRID=4326;POINT(13.4 52.5)')"
    )
    for position in positions:
        owner.execute(
            "INSERT INTO restaurant_service.outbox_dead_letter (position, event_id, aggregate_type, aggregate_id, "
            "event_type, payload, schema_version, txid, occurred_at, error) "
            "VALUES (%s, gen_random_uuid(), 'restaurant', gen_random_uuid(), 'RestaurantUpdated', '{}', 1, "
            "pg_current_xact_id(), now(), 'poison')",
            (position,),
        )
