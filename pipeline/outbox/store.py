"""Every read and write of the outbox and dead-letter tables; the SQL is in sql/*.sql beside this module.

Each method takes the connection it runs on, so the caller decides the transaction (the relay deletes
acknowledged rows and dead-letters poison ones in one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from connectors.postgres import sql_file

LEASE_CLASS = 0x6E62  # first key of every relay lease: pg_try_advisory_lock(LEASE_CLASS, hashtext(schema))


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row as claim_batch.sql reads it; the payload is the jsonb as text (the codec parses it)."""

    position: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: str
    schema_version: int
    txid: int
    occurred_at: datetime


@dataclass(frozen=True)
class Backlog:
    rows: int
    oldest_age_s: float
    dead_letter_rows: int


# The only row filters dead-letter replay and discard accept; values always travel as parameters.
DEAD_LETTER_FILTERS = {
    "position": "position = %(value)s",
    "aggregate": "aggregate_id = %(value)s::uuid",
    "all": "true",
}


class OutboxStore:
    """The outbox of one service schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def _sql(self, name: str, **fragments: sql.Composable) -> sql.Composed:
        return sql_file(__package__, name, schema=sql.Identifier(self.schema), **fragments)

    def try_lease(self, conn: psycopg.Connection) -> bool:
        (won,) = conn.execute(self._sql("try_lease"), {"lease_class": LEASE_CLASS, "schema": self.schema}).fetchone()
        return bool(won)

    def leader(self, conn: psycopg.Connection) -> tuple[int, datetime | None] | None:
        """The backend pid holding the lease and when its session started, or None."""
        row = conn.execute(self._sql("leader"), {"lease_class": LEASE_CLASS, "schema": self.schema}).fetchone()
        return (row[0], row[1]) if row else None

    def claim_batch(self, conn: psycopg.Connection, limit: int) -> list[OutboxRow]:
        cursor = conn.cursor(row_factory=class_row(OutboxRow))
        return cursor.execute(self._sql("claim_batch"), {"limit": limit}).fetchall()

    def delete_published(self, conn: psycopg.Connection, positions: list[int]) -> None:
        conn.execute(self._sql("delete_published"), {"positions": positions})

    def dead_letter(self, conn: psycopg.Connection, position: int, error: str) -> None:
        conn.execute(self._sql("dead_letter"), {"position": position, "error": error})

    def backlog(self, conn: psycopg.Connection) -> Backlog:
        rows, oldest_age, dead = conn.execute(self._sql("outbox_backlog")).fetchone()
        return Backlog(rows, float(oldest_age), dead)

    def dead_letters(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        return conn.cursor(row_factory=dict_row).execute(self._sql("dead_letter_list")).fetchall()

    def replay_dead_letters(self, conn: psycopg.Connection, by: str, value: object = None) -> int:
        """Move dead-lettered events back into the outbox (position and event id kept); returns how many."""
        where = sql.SQL(DEAD_LETTER_FILTERS[by])
        return conn.execute(self._sql("dead_letter_replay", where=where), {"value": value}).rowcount

    def discard_dead_letters(self, conn: psycopg.Connection, by: str, value: object = None) -> int:
        where = sql.SQL(DEAD_LETTER_FILTERS[by])
        return conn.execute(self._sql("dead_letter_discard", where=where), {"value": value}).rowcount
