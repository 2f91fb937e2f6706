"""Backfill: one snapshot event per existing business row, so a pipeline installed on a database that
already holds data (or a Pinot table rebuilt without its events) ends equal to PostgreSQL.

Each table is walked by primary key in chunks, each chunk its own short transaction that locks its rows
FOR SHARE, writes their snapshot events through migration 0014's functions (the triggers' own payload
functions) and records the progress in `public.backfill_progress`; a killed run resumes after its last
committed chunk. Why a snapshot is never older than a concurrent change: migrations/0014_backfill.sql.
The SQL is in sql/backfill_*.sql beside this module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from connectors import postgres
from connectors.postgres import sql_file
from pipeline.config import acting_user, login_url
from pipeline.contract import catalog
from pipeline.errors import NibbleError, UsageError

LOCK_KEY = 0x6E62_6B66  # pg_try_advisory_lock key of a running backfill ("nbkf")
# Bounds that keep the chunk queries plain index range scans (a NULL test would not): ids come from
# gen_random_uuid(), never the nil uuid, and no row was updated before year 1.
BEFORE_EVERY_ID = uuid.UUID(int=0)
EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SnapshotTable:
    name: str  # as the CLI and backfill_progress name it: the source table's name
    schema: str  # the outbox's service schema, where the snapshot function lives
    source: tuple[str, str]  # the table walked: schema, table
    emit_function: str  # 0014's <schema>.emit_<aggregate>_snapshots(ids uuid[]) -> events written
    event_type: str  # of the snapshot events it writes
    visible: str | None  # the SQL function of a source row saying whether analytics holds it; None: every row


# Every stream with a snapshot (avro_schemas/streams.json), in backfill order.
TABLES = {
    stream.table_name: SnapshotTable(
        name=stream.table_name,
        schema=stream.outbox,
        source=(stream.source_table.split(".")[0], stream.table_name),
        emit_function=stream.snapshot.function,
        event_type=stream.snapshot.event_type,
        visible=stream.snapshot.visible,
    )
    for stream in catalog.snapshot_streams(catalog.load())
    if stream.snapshot is not None  # always: snapshot_streams keeps those with one
}


class BackfillBusy(NibbleError):
    """Another backfill holds the lock on this database."""


@dataclass(frozen=True)
class Progress:
    """One table's progress after a chunk (or at its start)."""

    table: str
    rows_done: int  # over the whole backfill of the table, resumed runs included
    rows_total: int  # rows_done + what was left when this run started
    events: int
    rate: float  # rows/s in this run
    finished: bool = False
    already_done_at: datetime | None = None  # set when the table had finished before this run

    @property
    def eta_s(self) -> float | None:
        if self.rate <= 0:
            return None
        return max(0, self.rows_total - self.rows_done) / self.rate


def done_prefix(locked: Sequence[uuid.UUID], first_skipped: uuid.UUID | None) -> list[uuid.UUID]:
    """The locked ids (ascending) below the first id of the range the chunk could not lock: progress is one
    last id, so a chunk counts as done only up to its first gap."""
    if first_skipped is None:
        return list(locked)
    return [row_id for row_id in locked if row_id < first_skipped]


def throttle_delay(rows: int, elapsed_s: float, max_rate: float) -> float:
    """Seconds to sleep so that `rows` done in `elapsed_s` do not exceed `max_rate` rows/s."""
    return max(0.0, rows / max_rate - elapsed_s)


class Backfill:
    """Backfills on one database; `on_progress` sees each table's progress after every chunk."""

    def __init__(
        self,
        database_url: str,
        batch: int = 1000,
        max_rate: float = 5000,
        on_progress: Callable[[Progress], None] = lambda progress: None,
    ) -> None:
        if batch < 1 or max_rate <= 0:
            raise UsageError("--batch must be at least 1 and --max-rate above 0")
        self.database_url = database_url
        self.batch = batch
        self.max_rate = max_rate
        self.on_progress = on_progress

    def run(self, tables: Sequence[str], since: datetime | None = None, restart: bool = False) -> list[Progress]:
        """Backfill `tables` (all when empty) in order; returns the final progress of each."""
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            raise UsageError(f"unknown table {', '.join(unknown)}: choose from {', '.join(TABLES)}")
        with _connect(self.database_url) as conn:
            # Its runs are audited (0022) with the acting user, this session's only one.
            conn.execute("SELECT set_config('nibble.actor', %s, false)", (acting_user(),))
            # A session lock: released when this process ends, however it ends.
            if not conn.execute(_sql("backfill_lock"), {"key": LOCK_KEY}).fetchone()[0]:
                raise BackfillBusy("another nibble backfill is running on this database; let it finish or stop it")
            return [self._table(conn, TABLES[name], since, restart) for name in (tables or list(TABLES))]

    def _table(self, conn: psycopg.Connection, spec: SnapshotTable, since: datetime | None, restart: bool) -> Progress:
        state = conn.execute(_sql("backfill_progress_get"), {"table": spec.name}).fetchone()
        if state is not None and not restart:
            stored_since, last_id, rows_done, events, _, finished_at = state
            if finished_at is not None:
                done = Progress(spec.name, rows_done, rows_done, events, 0.0, True, finished_at)
                self.on_progress(done)
                return done
            if stored_since != since:
                raise UsageError(
                    f"{spec.name}: a backfill with --since {stored_since or '(none)'} is under way; "
                    "run it again with the same --since, or --restart"
                )
        else:
            conn.execute(_sql("backfill_progress_start"), {"table": spec.name, "since": since})
            last_id, rows_done, events = None, 0, 0
        remaining = conn.execute(
            _sql("backfill_remaining", spec), {"after": last_id or BEFORE_EVERY_ID, "since": since or EARLIEST}
        ).fetchone()[0]
        total, started, rows_run = rows_done + remaining, time.monotonic(), 0

        def report(finished: bool = False) -> Progress:
            elapsed = time.monotonic() - started
            progress = Progress(spec.name, rows_done, total, events, rows_run / elapsed if elapsed else 0.0, finished)
            self.on_progress(progress)
            return progress

        report()
        while True:
            chunk = self._chunk(conn, spec, last_id, since)
            if chunk is None:
                conn.execute(_sql("backfill_progress_finish"), {"table": spec.name})
                return report(finished=True)
            last_id, rows, emitted = chunk
            rows_done, events, rows_run = rows_done + rows, events + emitted, rows_run + rows
            report()
            time.sleep(throttle_delay(rows_run, time.monotonic() - started, self.max_rate))

    def _chunk(
        self, conn: psycopg.Connection, spec: SnapshotTable, after: uuid.UUID | None, since: datetime | None
    ) -> tuple[uuid.UUID, int, int] | None:
        """Write the next chunk's snapshots and progress in one transaction; (last id, rows, events), or None
        when no row is left."""
        params: dict[str, Any] = {"after": after or BEFORE_EVERY_ID, "since": since or EARLIEST}
        while True:
            with conn.transaction():
                locked = [
                    row[0] for row in conn.execute(_sql("backfill_lock_chunk", spec), {**params, "batch": self.batch})
                ]
                if locked:
                    skipped = conn.execute(
                        _sql("backfill_first_skipped", spec), {**params, "last": locked[-1], "locked": locked}
                    ).fetchone()
                    ids = done_prefix(locked, skipped[0] if skipped else None)
                    if ids:
                        return ids[-1], len(ids), self._emit(conn, spec, ids)
            # The next row is held by a writer (or none is left): wait for it alone, holding no other row.
            with conn.transaction():
                row = conn.execute(_sql("backfill_lock_next", spec), params).fetchone()
                if row is not None:
                    return row[0], 1, self._emit(conn, spec, [row[0]])
            # Nothing came back: none left, or the row waited for was deleted meanwhile (then go on).
            if conn.execute(_sql("backfill_remaining", spec), params).fetchone()[0] == 0:
                return None

    def _emit(self, conn: psycopg.Connection, spec: SnapshotTable, ids: list[uuid.UUID]) -> int:
        function = sql.Identifier(spec.schema, spec.emit_function)
        emitted = conn.execute(sql.SQL("SELECT {}(%s)").format(function), (ids,)).fetchone()[0]
        conn.execute(
            _sql("backfill_progress_advance"),
            {"table": spec.name, "last": ids[-1], "rows": len(ids), "events": emitted},
        )
        return emitted


def visible_rows(database_url: str) -> dict[str, int]:
    """Per table, the rows a backfill writes a snapshot for (and Pinot's state table holds)."""
    with _connect(database_url) as conn:
        return {name: conn.execute(_sql("backfill_visible_rows", spec)).fetchone()[0] for name, spec in TABLES.items()}


def unpublished_snapshots(database_url: str, table: str) -> int:
    """Snapshot events of `table` still in its outbox: the relay has not published them yet."""
    spec = TABLES[table]
    with _connect(database_url) as conn:
        query = sql_file(__package__, "backfill_unpublished", outbox=sql.Identifier(spec.schema, "outbox"))
        return conn.execute(query, {"event_type": spec.event_type}).fetchone()[0]


def _connect(database_url: str) -> psycopg.Connection:
    """As the `nibble_backfill` login (migration 0021), whatever user `database_url` names."""
    return postgres.connect(login_url(database_url, "nibble_backfill"), "nibble-backfill")


def _sql(name: str, spec: SnapshotTable | None = None) -> sql.Composed:
    if spec is None:
        return sql_file(__package__, name)
    visible = sql.SQL("{}(t)").format(sql.Identifier(*spec.visible.split("."))) if spec.visible else sql.SQL("true")
    return sql_file(__package__, name, table=sql.Identifier(*spec.source), visible=visible)
