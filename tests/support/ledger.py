"""The order ledger entries for an order's successive states (docs/events.md, "The order ledger"), for tests
that publish synthetic orders straight to Kafka: the library's order queries read the ledger, so such a test
publishes the matching entries too. Pure: order payloads in, ledger payloads (or outbox rows) out.

Summed over an order's entries: orders = 1, cancelled = 1 if its newest state is cancelled, and gmv_cents,
subtotal_cents and items its newest total, subtotal and item count while it is not cancelled (0 once it is).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pipeline.contract.rows import OutboxRow

DIMENSIONS = ("order_id", "restaurant_id", "restaurant_name", "city", "cuisine", "placed_at")
MEASURES = ("orders", "cancelled", "gmv_cents", "subtotal_cents", "items")


def facts(state: dict[str, Any]) -> dict[str, Any]:
    """What the ledger counts for one order payload (the orders stream's fields)."""
    return entry(state, 1)


def entry(state: dict[str, Any], sign: int) -> dict[str, Any]:
    """Migration 0015's ledger_entry(o, sign): the order state `state` arriving (1) or leaving (-1)."""
    live = state["status"] != "cancelled"
    return {
        **{name: state[name] for name in DIMENSIONS},
        "orders": sign,
        "cancelled": 0 if live else sign,
        "gmv_cents": sign * state["total_cents"] if live else 0,
        "subtotal_cents": sign * state["subtotal_cents"] if live else 0,
        "items": sign * state["item_count"] if live else 0,
    }


def change_entries(previous: dict[str, Any] | None, state: dict[str, Any]) -> list[dict[str, Any]]:
    """What the triggers write for one change (previous None: the placement): nothing unless a fact or a
    dimension changes, else the old state leaving and the new one arriving."""
    if previous is None:
        return [entry(state, 1)]
    if facts(previous) == facts(state):
        return []
    return [entry(previous, -1), entry(state, 1)]


def ledger_entries(states: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries one order's successive states write."""
    entries: list[dict[str, Any]] = []
    previous = None
    for state in states:
        entries += change_entries(previous, state)
        previous = state
    return entries


def ledger_rows(states: Iterable[dict[str, Any]], occurred_at: datetime) -> list[OutboxRow]:
    """The entries as the outbox rows the relay would encode (aggregate type order_ledger, schema version 1)."""
    return [
        OutboxRow(
            position,
            str(uuid.uuid4()),
            "order_ledger",
            entry["order_id"],
            "OrderLedgerEntry",
            json.dumps(entry),
            1,
            1,
            occurred_at,
        )
        for position, entry in enumerate(ledger_entries(states), start=1)
    ]
