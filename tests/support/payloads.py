"""An order event's payload as the order trigger writes it (the orders stream's fields, docs/events.md), for the
tests and benchmarks that encode or publish synthetic orders without the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def order_payload(order_id: str, at: datetime, **changes: Any) -> dict[str, Any]:
    """A placed, unpaid order of two items in Berlin (22.50 + 2.49 delivery + 1.00 tip), placed and last updated
    at `at`, its customer and restaurant ids its own; `changes` replace any field."""
    stamp = at.isoformat()
    return {
        "order_id": order_id,
        "user_id": order_id,
        "restaurant_id": order_id,
        "restaurant_name": "Bench Bistro",
        "city": "Berlin",
        "cuisine": "thai",
        "status": "placed",
        "item_count": 2,
        "subtotal_cents": 2250,
        "delivery_fee_cents": 249,
        "tip_cents": 100,
        "total_cents": 2599,
        "currency": "EUR",
        "payment_status": None,
        "cancel_reason": None,
        "delivery_lat": 52.5,
        "delivery_lon": 13.4,
        "placed_at": stamp,
        "promised_at": None,
        "updated_at": stamp,
        **changes,
    }
