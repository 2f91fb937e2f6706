"""Every read and write of the outbox and dead-letter tables; the SQL is in sql/*.sql beside this module.

Each method takes the connection it runs on, so the caller decides the transaction (the relay deletes
acknowledged rows and dead-letters poison ones in one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import args_row, dict_row

from connectors.postgres import sql_file
from pipeline.contract.rows import OutboxRow

# First keys of the relay's advisory locks: (FENCE_CLASS, hashtext(schema)) is an outbox's fence, held shared
# by every relay publishing it; (LANE_CLASS, hashtext(schema/lane)) is one lane's lease.
FENCE_CLASS = 0x6E62
LANE_CLASS = 0x6E63


@dataclass(frozen=True)
class LaneState:
    lane_count: int
    relays: list[int]  # backend pids of the live relays of this database
    holders: dict[int, int]  # lane -> backend pid holding its lease
    fence_requested: bool  # a lane-count switch holds or waits for the fence: leave the outbox


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

    def _keys(self, **values: object) -> dict[str, object]:
        return {"fence_class": FENCE_CLASS, "lane_class": LANE_CLASS, "schema": self.schema, **values}

    def lane_state(self, conn: psycopg.Connection, application_name: str) -> LaneState:
        row = conn.execute(self._sql("lane_state"), self._keys(application=application_name)).fetchone()
        lane_count, relays, lanes, holders, fence_requested = row
        return LaneState(lane_count, relays, dict(zip(lanes, holders, strict=True)), fence_requested)

    def try_fence_share(self, conn: psycopg.Connection) -> bool:
        return bool(conn.execute(self._sql("try_fence_share"), self._keys()).fetchone()[0])

    def release_fence_share(self, conn: psycopg.Connection) -> None:
        conn.execute(self._sql("release_fence_share"), self._keys())

    def try_lane(self, conn: psycopg.Connection, lane: int) -> bool:
        return bool(conn.execute(self._sql("try_lane"), self._keys(lane=lane)).fetchone()[0])

    def release_lane(self, conn: psycopg.Connection, lane: int) -> None:
        conn.execute(self._sql("release_lane"), self._keys(lane=lane))

    def lane_of(self, conn: psycopg.Connection, aggregate_id: str, lane_count: int) -> int:
        return conn.execute(self._sql("lane_of"), {"aggregate_id": aggregate_id, "lane_count": lane_count}).fetchone()[
            0
        ]

    def switch_lane_count(self, conn: psycopg.Connection, lane_count: int, timeout_s: float) -> None:
        """Fenced: wait (at most timeout_s) until no relay publishes this outbox, set the count, let them back.
        Raises psycopg.errors.LockNotAvailable when the relays did not leave in time."""
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(timeout_s * 1000)}ms")))
        conn.execute(self._sql("fence"), self._keys())
        try:
            conn.execute(self._sql("set_lane_count"), self._keys(lane_count=lane_count))
        finally:
            conn.execute(self._sql("unfence"), self._keys())

    def claim_batch(self, conn: psycopg.Connection, limit: int, lane_count: int, lanes: list[int]) -> list[OutboxRow]:
        cursor = conn.cursor(row_factory=args_row(OutboxRow))
        with conn.transaction():
            conn.execute(self._sql("claim_plan"))
            return cursor.execute(
                self._sql("claim_batch"), {"limit": limit, "lane_count": lane_count, "lanes": lanes}
            ).fetchall()

    def delete_published(self, conn: psycopg.Connection, positions: list[int]) -> None:
        # As an array literal: psycopg adapts a list of ints element by element in Python, ~0.9 us a position.
        conn.execute(self._sql("delete_published"), {"positions": "{" + ",".join(map(str, positions)) + "}"})

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
