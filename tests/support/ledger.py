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

from pipeline.outbox.store import OutboxRow

DIMENSIONS = ("order_id", "restaurant_id", "restaurant_name", "city", "cuisine", "placed_at")
MEASURES = ("orders", "cancelled", "gmv_cents", "subtotal_cents", "items")


def facts(state: dict[str, Any]) -> dict[str, Any]:
    """What the ledger counts for one order payload (the orders stream's fields)."""
    live = state["status"] != "cancelled"
    return {
        **{name: state[name] for name in DIMENSIONS},
        "orders": 1,
        "cancelled": 0 if live else 1,
        "gmv_cents": state["total_cents"] if live else 0,
        "subtotal_cents": state["subtotal_cents"] if live else 0,
        "items": state["item_count"] if live else 0,
    }


def ledger_entries(states: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries one order's successive states write: its first state whole, then only what changes: a
    change of measures as their difference, a change of dimensions as the old facts negated and the new ones."""
    entries: list[dict[str, Any]] = []
    counted: dict[str, Any] | None = None
    for state in states:
        now = facts(state)
        if counted is None:
            entries.append(now)
        elif any(now[name] != counted[name] for name in DIMENSIONS):
            entries += [{**counted, **{m: -counted[m] for m in MEASURES}}, now]
        elif any(now[m] != counted[m] for m in MEASURES):
            entries.append({**now, **{m: now[m] - counted[m] for m in MEASURES}})
        counted = now
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
