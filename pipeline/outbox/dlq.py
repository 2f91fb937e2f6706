"""The operator's hands on dead-lettered (poison) events: list, replay, discard.

Replay moves rows back into their outbox with the position and event id they had, so a parked aggregate's
events go out in their original order once the cause is fixed. Discard deletes them, which un-parks the
aggregate. Each runs as the `nibble_dlq` login (migration 0021), and replay and discard are audited with the
acting user (0022).
"""

from __future__ import annotations

from typing import Any

import psycopg

from connectors import postgres
from pipeline.config import acting_user, login_url
from pipeline.outbox.store import OutboxStore


def list_dead_letters(database_url: str, schemas: list[str]) -> list[dict[str, Any]]:
    with _connect(database_url) as conn:
        return [row | {"outbox": schema} for schema in schemas for row in OutboxStore(schema).dead_letters(conn)]


def replay(database_url: str, schemas: list[str], by: str, value: object = None) -> int:
    """Replay the selected dead letters (`by`: position, aggregate or all) of every outbox; returns how many."""
    with _connect(database_url) as conn, conn.transaction():
        conn.execute("SELECT set_config('nibble.actor', %s, true)", (acting_user(),))
        return sum(OutboxStore(schema).replay_dead_letters(conn, by, value) for schema in schemas)


def discard(database_url: str, schemas: list[str], by: str, value: object = None) -> int:
    with _connect(database_url) as conn, conn.transaction():
        conn.execute("SELECT set_config('nibble.actor', %s, true)", (acting_user(),))
        return sum(OutboxStore(schema).discard_dead_letters(conn, by, value) for schema in schemas)


def _connect(database_url: str) -> psycopg.Connection:
    return postgres.connect(login_url(database_url, "nibble_dlq"), "nibble-dlq")
