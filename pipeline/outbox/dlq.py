"""The operator's hands on dead-lettered (poison) events: list, replay, discard.

Replay moves rows back into their outbox with the position and event id they had, so a parked aggregate's
events go out in their original order once the cause is fixed. Discard deletes them, which un-parks the
aggregate. Both need a role that may write the outbox (the service owner, not `nibble_relay`).
"""

from __future__ import annotations

from typing import Any

from connectors import postgres
from pipeline.outbox.store import OutboxStore


def list_dead_letters(database_url: str, schemas: list[str]) -> list[dict[str, Any]]:
    with postgres.connect(database_url, "nibble-dlq") as conn:
        return [row | {"outbox": schema} for schema in schemas for row in OutboxStore(schema).dead_letters(conn)]


def replay(database_url: str, schemas: list[str], by: str, value: object = None) -> int:
    """Replay the selected dead letters (`by`: position, aggregate or all) of every outbox; returns how many."""
    with postgres.connect(database_url, "nibble-dlq") as conn, conn.transaction():
        return sum(OutboxStore(schema).replay_dead_letters(conn, by, value) for schema in schemas)


def discard(database_url: str, schemas: list[str], by: str, value: object = None) -> int:
    with postgres.connect(database_url, "nibble-dlq") as conn, conn.transaction():
        return sum(OutboxStore(schema).discard_dead_letters(conn, by, value) for schema in schemas)
