"""`nibble verify`: does Pinot still equal PostgreSQL? Compare, name the drifting aggregates, repair them.

For each stream, first bucketed counts and sums on both sides (per hour of the aggregate's time column, or
per city for the small dimension tables); each differing hour is bisected into minutes, and only the
differing minutes are read aggregate by aggregate and classified (drift.py). The SQL is in sql/ beside this
module: `verify_<stream>_*.sql` for PostgreSQL, `pinot_verify_<stream>_*.sql` for Pinot.

A consistent point. Under a running writer and relay, a change can be in the outbox, in Kafka or in a
consuming segment when it is compared. So a verification first waits until Pinot has consumed what Kafka
held when it started, and every candidate is checked again before it is reported: read it
in PostgreSQL, note Kafka's end offsets, wait until Pinot has consumed up to them, read it in Pinot, read
it in PostgreSQL again. An aggregate whose state changed between the two PostgreSQL reads, or with an
event still in its outbox or dead-letter table, is in flight and is checked again (a few rounds), never
reported; for the others every event PostgreSQL had written was in Kafka before the offsets were noted
(the relay deletes an outbox row only once Kafka acknowledged it), so Pinot must hold their state.

Windows. Orders, deliveries and the ledger are compared for the aggregates placed/created in
[since, until); the history tables for events that occurred in it (bucketed by outbox position: a duplicate
shares its original's position, not its time); drivers and restaurants whole. A table whose retention is
shorter than ten years is compared only over the part it keeps (with a margin): a row aged out of Pinot is
not drift.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from connectors import kafka, postgres
from connectors.pinot import Controller, broker_connection
from connectors.postgres import sql_file
from pipeline.analytics import drift
from pipeline.analytics.drift import Drift, PinotState
from pipeline.analytics.queries import FROM_TABLE, Query
from pipeline.analytics.rebuild import caught_up
from pipeline.config import Settings, acting_user, login_url
from pipeline.contract import catalog
from pipeline.contract.codec import Codec
from pipeline.errors import NibbleError, UsageError
from pipeline.outbox.backfill import TABLES as SNAPSHOT_TABLES
from pipeline.resources import PINOT

SQL_DIR = Path(__file__).resolve().parent / "sql"
HOUR_MS, MINUTE_MS = 3_600_000, 60_000
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)
ROW_LIMIT = 1_000_000  # the LIMIT of every Pinot query here: an answer that long may be cut
ID_CHUNK = 5000  # aggregate ids per look-up query
SETTLE_ROUNDS = 4
# History tables are checked in buckets of outbox positions, then the differing ones in smaller buckets.
POSITIONS_COARSE, POSITIONS_FINE = 100_000, 1_000
LAST_POSITION = 2**62
PINOT_TIMEOUT_MS = 60_000  # a bucket query scans a whole table


class VerifyFailed(NibbleError):
    """Verification could not be carried out (not: it found drift, which is a result)."""


_CATALOG = {table: entry for entry in catalog.load().values() for table in entry.pinot_tables}


@dataclass(frozen=True)
class Stream:
    """A Pinot table compared with PostgreSQL; the rest of what it is comes from the stream catalog."""

    table: str  # as --stream and the report name it
    fields: tuple[str, ...] = ()  # state: the values compared, in the rows queries' order after the id
    dimensions: int = 0  # group columns after the bucket in its bucket queries
    timed: bool = True  # buckets by time; otherwise by city (a small table, compared whole)

    @property
    def name(self) -> str:
        return self.table

    @property
    def kind(self) -> str:
        """ "state" (upsert table), "ledger" (summed entries) or "history" (one row per event)."""
        entry = _CATALOG[self.table]
        if self.table not in entry.history_tables:
            return "state"
        return "history" if entry.compacted else "ledger"

    @property
    def outbox(self) -> str:
        """The service schema whose outbox carries its events."""
        return _CATALOG[self.table].outbox

    @property
    def aggregate_type(self) -> str:
        """Of its events, so of its topic."""
        return _CATALOG[self.table].aggregate_type

    @property
    def snapshot(self) -> str | None:
        """The backfill table whose snapshot function re-publishes a state table's aggregates."""
        entry = _CATALOG[self.table]
        return entry.table_name if entry.snapshot is not None and self.kind == "state" else None


STREAMS = {
    stream.name: stream
    for stream in (
        Stream(
            "orders",
            (
                "city",
                "restaurant_id",
                "status",
                "payment_status",
                "item_count",
                "subtotal_cents",
                "total_cents",
                "placed_at",
            ),
            dimensions=2,
        ),
        Stream("order_ledger"),
        Stream("order_events"),
        Stream(
            "deliveries",
            ("city", "order_id", "driver_id", "status", "created_at", "promised_at", "delivered_at"),
            dimensions=1,
        ),
        Stream("delivery_events"),
        Stream("drivers", ("city", "vehicle_type", "status", "is_active"), dimensions=2, timed=False),
        Stream("restaurants", ("city", "name", "is_active", "rating"), dimensions=1, timed=False),
    )
}


@dataclass(frozen=True)
class Scope:
    """What to compare: a window, optionally some cities only (tests keep their data in cities of their own,
    beside everything else the shared Pinot tables hold)."""

    since: datetime = BEGINNING
    until: datetime = END_OF_TIME
    cities: tuple[str, ...] = ()
    streams: tuple[str, ...] = tuple(STREAMS)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.streams) - set(STREAMS))
        if unknown:
            raise UsageError(f"unknown stream {', '.join(unknown)}: choose from {', '.join(STREAMS)}")
        if self.since >= self.until:
            raise UsageError("--since must be before --until")


@dataclass
class StreamResult:
    stream: str
    since: datetime | None  # the window's start after the retention clamp; None: compared whole
    buckets: int  # buckets compared
    differing: int  # buckets that differed at first sight
    drifts: list[Drift] = field(default_factory=list)
    in_flight: int = 0  # candidates still changing after every settle round (not drift)


@dataclass
class PinotLoad:
    """What a verification asked of Pinot, as its broker reports each query."""

    queries: int = 0
    docs_scanned: int = 0  # rows the servers read (numDocsScanned)
    broker_ms: int = 0  # the queries' time in the broker (timeUsedMs), summed


@dataclass
class Report:
    scope: Scope
    results: list[StreamResult]
    seconds: float
    ingestion_lag: dict[str, int]  # Pinot table -> messages its consuming segments are behind Kafka
    pinot_load: PinotLoad = field(default_factory=PinotLoad)

    @property
    def drifts(self) -> list[Drift]:
        return [d for result in self.results for d in result.drifts]

    @property
    def equal(self) -> bool:
        return not self.drifts

    def as_json(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "since": self.scope.since.isoformat(),
            "until": self.scope.until.isoformat(),
            "cities": list(self.scope.cities),
            "seconds": round(self.seconds, 3),
            "ingestion_lag_messages": self.ingestion_lag,
            "pinot_load": {
                "queries": self.pinot_load.queries,
                "docs_scanned": self.pinot_load.docs_scanned,
                "broker_ms": self.pinot_load.broker_ms,
            },
            "streams": [
                {
                    "stream": r.stream,
                    "since": r.since.isoformat() if r.since else None,
                    "buckets": r.buckets,
                    "differing_buckets": r.differing,
                    "in_flight": r.in_flight,
                    "drift": {kind: sum(1 for d in r.drifts if d.kind == kind) for kind in drift.KINDS},
                    "aggregates": [
                        {"kind": d.kind, "aggregate_id": d.aggregate_id, "detail": d.detail} for d in r.drifts
                    ],
                }
                for r in self.results
            ],
        }


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _chunks(ids: Sequence[str], size: int = ID_CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


class Verifier:
    """One database and one Pinot cluster; `verify` may run many times (the watch mode does)."""

    def __init__(self, settings: Settings, settle_timeout_s: float = 60) -> None:
        self.settings = settings
        self.endpoints = settings.endpoints
        self.settle_timeout_s = settle_timeout_s
        self.controller = Controller(self.endpoints.pinot_controller_url)
        self.codec = Codec(self.endpoints.topic_prefix)
        self.queries = {path.stem: Query.load(path) for path in sorted(SQL_DIR.glob("pinot_verify_*.sql"))}

    def database(self) -> psycopg.Connection:
        """PostgreSQL as the read-only `nibble_verify` login (migration 0021), whatever NIBBLE_DATABASE_URL names."""
        return postgres.connect(login_url(self.endpoints.database_url, "nibble_verify"), "nibble-verify")

    # --- the comparison --------------------------------------------------------------------------------

    def verify(self, scope: Scope) -> Report:
        started = time.monotonic()
        now = datetime.now(UTC)
        # What Kafka held when the verification started is compared: a message just produced is not missed.
        self.wait_ingested(STREAMS[name] for name in scope.streams)
        with self.database() as conn:
            cursor = broker_connection(self.endpoints.pinot_broker_url, PINOT_TIMEOUT_MS).cursor()
            session = _Session(self, conn, cursor, scope)
            try:
                results = [session.stream(STREAMS[name], now) for name in scope.streams]
            except psycopg.errors.UndefinedTable as exc:
                raise VerifyFailed(f"{exc.diag.message_primary}: has `nibble migrate` run on this database?") from None
        lag = {STREAMS[name].table: self.ingestion_lag(STREAMS[name]) for name in scope.streams}
        return Report(scope, results, time.monotonic() - started, lag, session.pinot_load)

    def topic(self, stream: Stream) -> str:
        return self.codec.streams[stream.aggregate_type].topic

    def ingestion_lag(self, stream: Stream) -> int:
        """Messages of the stream's topic that Pinot's consuming segments have not read yet."""
        ends = kafka.watermarks(self.endpoints.kafka_bootstrap_servers, self.topic(stream))
        consumed = self.controller.consumed_offsets(self.table(stream))
        return sum(max(0, end - consumed.get(partition, 0)) for partition, (_, end) in ends.items() if end > 0)

    def ingestion_lag_seconds(self, stream: Stream) -> float:
        """Age of the oldest message of the stream's topic Pinot has not consumed (0 when it has them all): the
        timestamp of the message at each lagging partition's consumed offset."""
        topic = self.topic(stream)
        ends = kafka.watermarks(self.endpoints.kafka_bootstrap_servers, topic)
        consumed = self.controller.consumed_offsets(self.table(stream))
        behind = [
            TopicPartition(topic, partition, consumed.get(partition, first))
            for partition, (first, end) in ends.items()
            if consumed.get(partition, first) < end
        ]
        if not behind:
            return 0.0
        oldest = min(_timestamps(self.endpoints.kafka_bootstrap_servers, behind).values(), default=None)
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

    def wait_ingested(self, streams: Iterable[Stream]) -> None:
        """Note Kafka's end offsets of the streams' topics, then wait until Pinot has consumed up to them. Not
        by then (settle_timeout_s), there is no consistent point to compare at: a failure, not drift."""
        marks = {
            self.table(s): {
                p: end
                for p, (_, end) in kafka.watermarks(self.endpoints.kafka_bootstrap_servers, self.topic(s)).items()
            }
            for s in streams
        }
        deadline, delay = time.monotonic() + self.settle_timeout_s, 0.1
        while True:
            behind = [t for t, ends in marks.items() if not caught_up(self.controller.consumed_offsets(t), ends)]
            if not behind:
                time.sleep(0.2)  # a consumed row is indexed a moment later
                return
            if time.monotonic() > deadline:
                raise VerifyFailed(
                    f"Pinot had not consumed what Kafka holds within {self.settle_timeout_s:.0f} s "
                    f"({', '.join(behind)}): raise --settle-timeout, or see docs/faults.md on ingestion lag"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def table(self, stream: Stream) -> str:
        """The Pinot table the stream is compared with (NIBBLE_PINOT_TABLE_PREFIX: a set of tables of its own)."""
        return self.settings.pinot.table_prefix + stream.table

    def retention(self, stream: Stream) -> timedelta | None:
        """How long Pinot keeps the table's rows (None: for ever): its realtime part's retention as Pinot
        stores it (`nibble pinot apply` fills it in from the settings), and for a hybrid table the longer
        offline one (pinot/offline/, kept as checked in)."""
        parts = [(self.controller.realtime_table(self.table(stream)) or {}).get("segmentsConfig", {})]
        offline = PINOT / "offline" / f"{stream.table}.json"
        if offline.exists():
            parts.append(json.loads(offline.read_text()).get("segmentsConfig", {}))
        return drift.longest(drift.kept_for(part) for part in parts)

    # --- repair ----------------------------------------------------------------------------------------

    def repair(self, drifts: Iterable[Drift]) -> dict[str, int]:
        """Re-publish the current state of every missing or stale aggregate of a state stream through the
        backfill's snapshot functions (so the outbox's order and lanes apply); returns events written per
        stream. Extra rows and duplicated events cannot be taken back by an event (see docs/operations.md)."""
        ids: dict[str, set[str]] = {}
        for d in drifts:
            stream = STREAMS[d.stream]
            if d.kind in ("missing", "stale") and stream.snapshot:
                ids.setdefault(stream.snapshot, set()).add(d.aggregate_id)
        written: dict[str, int] = {}
        # The read-only login cannot write snapshots: the backfill's login, which may, re-publishes.
        with postgres.connect(login_url(self.endpoints.database_url, "nibble_backfill"), "nibble-verify") as conn:
            conn.execute("SELECT set_config('nibble.actor', %s, false)", (acting_user(),))
            for table, aggregate_ids in ids.items():
                spec = SNAPSHOT_TABLES[table]
                function = sql.Identifier(spec.schema, spec.emit_function)
                for chunk in _chunks(sorted(aggregate_ids)):
                    with conn.transaction():
                        query = sql.SQL("SELECT {}(%s::uuid[])").format(function)
                        written[table] = written.get(table, 0) + conn.execute(query, (chunk,)).fetchone()[0]
        return written

    def wait_published(
        self, drifts: Iterable[Drift], timeout_s: float, sleep: Callable[[float], None] = time.sleep
    ) -> bool:
        """Wait until no repaired aggregate has an event left in its outbox (the relay published them)."""
        by_outbox: dict[str, list[str]] = {}
        for d in drifts:
            by_outbox.setdefault(STREAMS[d.stream].outbox, []).append(d.aggregate_id)
        deadline = time.monotonic() + timeout_s
        with self.database() as conn:
            while True:
                if not any(_pending(conn, outbox, ids) for outbox, ids in by_outbox.items()):
                    return True
                if time.monotonic() > deadline:
                    return False
                sleep(0.5)


def _timestamps(bootstrap: str, positions: list[TopicPartition], timeout_s: float = 10) -> dict[int, int]:
    """Each partition's timestamp (epoch ms) of the message at the given offset (or the next one held)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "nibble-verify-lag", "enable.auto.commit": False})
    found: dict[int, int] = {}
    try:
        consumer.assign(positions)
        deadline = time.monotonic() + timeout_s
        while len(found) < len(positions) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error() and message.partition() not in found:
                found[message.partition()] = message.timestamp()[1]
    finally:
        consumer.close()
    return found


def _pending(conn: psycopg.Connection, outbox: str, ids: Sequence[str]) -> set[str]:
    """Aggregates of `ids` with an event in the outbox or the dead-letter table of `outbox`."""
    query = sql_file(
        "pipeline.analytics",
        "verify_pending",
        outbox=sql.Identifier(outbox, "outbox"),
        dead_letter=sql.Identifier(outbox, "outbox_dead_letter"),
    )
    found: set[str] = set()
    for chunk in _chunks(list(ids)):
        found |= {row[0] for row in conn.execute(query, {"ids": chunk})}
    return found


class _Session:
    """One verification: its PostgreSQL connection, its Pinot cursor and its scope."""

    def __init__(self, verifier: Verifier, conn: psycopg.Connection, pinot: Any, scope: Scope) -> None:
        self.verifier = verifier
        self.conn = conn
        self.pinot = pinot
        self.scope = scope
        self.cities = list(scope.cities) or None
        self.pinot_load = PinotLoad()

    def pg(self, name: str, **params: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql_file("pipeline.analytics", name), {"cities": self.cities, **params}).fetchall()

    def pinot_rows(self, name: str, **params: Any) -> list[list[Any]]:
        params = {"cities": self.cities, **params}
        query = self.verifier.queries[name]
        prefix = self.verifier.settings.pinot.table_prefix
        statement = FROM_TABLE.sub(lambda m: f"FROM {prefix}{m.group(1)}", query.render(params))
        self.pinot.execute(statement, {k: v for k, v in params.items() if v is not None})
        rows = self.pinot.fetchall()
        stats = self.pinot.query_stats
        self.pinot_load.queries += 1
        self.pinot_load.docs_scanned += int(stats.get("numDocsScanned", 0))
        self.pinot_load.broker_ms += max(0, int(stats.get("timeUsedMs", 0)))
        if len(rows) >= ROW_LIMIT:
            raise VerifyFailed(f"{name}: Pinot's answer reached {ROW_LIMIT:,} rows; verify a shorter window")
        return rows

    # --- one stream ------------------------------------------------------------------------------------

    def stream(self, stream: Stream, now: datetime) -> StreamResult:
        cutoff = drift.retention_cutoff(now, self.verifier.retention(stream))
        if stream.kind == "history":
            return self._history(stream, drift.clamp(self.scope.since, cutoff))
        if stream.timed:
            since = drift.clamp(self.scope.since, cutoff)
            buckets, differing, candidates = self._timed(stream, since)
            result = StreamResult(stream.name, since, buckets, differing)
        else:
            since = cutoff or BEGINNING
            buckets, differing, candidates = self._by_city(stream, since)
            result = StreamResult(stream.name, None, buckets, differing)
        if candidates:
            result.drifts, result.in_flight = self._settle(stream, candidates, since)
        return result

    def _bucket_sides(
        self, stream: Stream, since: datetime, until: datetime, grain: str, grain_ms: int
    ) -> tuple[dict[Any, Any], dict[Any, Any]]:
        postgres_side = self.pg(f"verify_{stream.name}_buckets", since=since, until=until, grain_ms=grain_ms)
        pinot_side = self.pinot_rows(
            f"pinot_verify_{stream.name}_buckets", since=_millis(since), until=_millis(until), grain=grain
        )
        return drift.bucket_sums(postgres_side, stream.dimensions), drift.bucket_sums(pinot_side, stream.dimensions)

    def _timed(self, stream: Stream, since: datetime) -> tuple[int, int, set[str]]:
        """Hours, then the minutes of each differing hour; the aggregates of the differing minutes."""
        until = self.scope.until
        if since >= until:
            return 0, 0, set()
        pg_hours, pinot_hours = self._bucket_sides(stream, since, until, "HOUR", HOUR_MS)
        hours = drift.differing_buckets(pg_hours, pinot_hours)
        ranges = []
        for hour in hours:
            lo = max(datetime.fromtimestamp(hour / 1000, UTC), since)
            hi = min(datetime.fromtimestamp((hour + HOUR_MS) / 1000, UTC), until)
            pg_minutes, pinot_minutes = self._bucket_sides(stream, lo, hi, "MINUTE", MINUTE_MS)
            ranges += [
                (max(minute, _millis(lo)), min(minute + MINUTE_MS, _millis(hi)))
                for minute in drift.differing_buckets(pg_minutes, pinot_minutes)
            ]
        candidates: set[str] = set()
        for lo_ms, hi_ms in drift.merge_ranges(ranges):
            lo, hi = datetime.fromtimestamp(lo_ms / 1000, UTC), datetime.fromtimestamp(hi_ms / 1000, UTC)
            found = self._classify(
                stream, self._pg_state(stream, since=lo, until=hi), self._pinot_state(stream, lo_ms, hi_ms)
            )
            candidates |= {d.aggregate_id for d in found}
        buckets = len({key[0] for key in pg_hours.keys() | pinot_hours.keys()})
        return buckets, len(hours), candidates

    def _by_city(self, stream: Stream, since: datetime) -> tuple[int, int, set[str]]:
        pg_side = drift.bucket_sums(self.pg(f"verify_{stream.name}_buckets", since=since), stream.dimensions)
        pinot_side = drift.bucket_sums(
            self.pinot_rows(f"pinot_verify_{stream.name}_buckets", since=_millis(since)), stream.dimensions
        )
        cities = drift.differing_buckets(pg_side, pinot_side)
        if not cities:
            return len({key[0] for key in pg_side.keys() | pinot_side.keys()}), 0, set()
        found = self._classify(
            stream,
            self._pg_state(stream, since=since, buckets=cities),
            self._pinot_state(stream, _millis(since), None, buckets=cities),
        )
        return len({key[0] for key in pg_side.keys() | pinot_side.keys()}), len(cities), {d.aggregate_id for d in found}

    def _pg_state(self, stream: Stream, ids: list[str] | None = None, **window: Any) -> dict[str, tuple[Any, ...]]:
        params = {"since": BEGINNING, "until": END_OF_TIME, "buckets": None, "ids": ids, **window}
        return {row[0]: drift.normalized(row[1:]) for row in self.pg(f"verify_{stream.name}_rows", **params)}

    def _pinot_state(
        self,
        stream: Stream,
        since_ms: int,
        until_ms: int | None,
        ids: list[str] | None = None,
        buckets: list[str] | None = None,
    ) -> dict[str, Any]:
        rows = self.pinot_rows(
            f"pinot_verify_{stream.name}_rows",
            since=since_ms,
            until=until_ms if until_ms is not None else _millis(END_OF_TIME),
            ids=ids,
            buckets=buckets,
        )
        if stream.kind == "ledger":
            return {row[0]: drift.normalized(row[1:]) for row in rows}
        width = len(stream.fields)
        return {
            row[0]: PinotState(drift.normalized(row[1 : 1 + width]), int(row[1 + width]), str(row[2 + width]))
            for row in rows
        }

    def _classify(self, stream: Stream, pg_side: dict[str, Any], pinot_side: dict[str, Any]) -> list[Drift]:
        if stream.kind == "ledger":
            return drift.classify_ledger(stream.name, pg_side, pinot_side)
        return drift.classify_state(stream.name, stream.fields, pg_side, pinot_side)

    def _settle(self, stream: Stream, candidates: set[str], since: datetime) -> tuple[list[Drift], int]:
        """Check the candidates again at a consistent point (module docstring), a few rounds for those in
        flight; returns the drift confirmed and how many were still in flight."""
        ids, drifts = sorted(candidates), []
        for round_number in range(SETTLE_ROUNDS):
            if round_number:
                time.sleep(1.0)
            before = self._pg_by_ids(stream, ids)
            waiting = _pending(self.conn, stream.outbox, ids)
            self.verifier.wait_ingested([stream])
            pinot_side: dict[str, Any] = {}
            for chunk in _chunks(ids):
                pinot_side |= self._pinot_state(stream, 0, None, ids=chunk)
            after = self._pg_by_ids(stream, ids)
            waiting |= _pending(self.conn, stream.outbox, ids)
            settled = drift.steady(ids, before, after, waiting)
            drifts += self._classify(
                stream,
                {a: v for a, v in after.items() if a in settled},
                {a: v for a, v in pinot_side.items() if a in settled},
            )
            ids = sorted(set(ids) - settled)
            if not ids:
                break
        return sorted(drifts), len(ids)

    def _pg_by_ids(self, stream: Stream, ids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in _chunks(ids):
            found |= self._pg_state(stream, ids=chunk)
        return found

    # --- history tables: duplicates only (PostgreSQL keeps no event history to compare with) -------------

    def _history(self, stream: Stream, since: datetime) -> StreamResult:
        """Buckets of outbox positions whose rows outnumber their distinct positions, split into smaller
        buckets, whose rows are read: the aggregates holding one position twice."""
        result = StreamResult(stream.name, since, 0, 0)
        if since >= self.scope.until:
            return result
        window = {"since": _millis(since), "until": _millis(self.scope.until)}
        held, differing = self._duplicate_buckets(stream, window, 0, LAST_POSITION, POSITIONS_COARSE)
        candidates: list[Drift] = []
        for coarse in differing:
            for fine in self._duplicate_buckets(stream, window, coarse, coarse + POSITIONS_COARSE, POSITIONS_FINE)[1]:
                rows = self.pinot_rows(
                    f"pinot_verify_{stream.name}_rows", **window, from_position=fine, to_position=fine + POSITIONS_FINE
                )
                candidates += drift.duplicated_events(stream.name, [(r[0], int(r[1]), r[2]) for r in rows])
        result.buckets, result.differing, result.drifts = len(held), len(differing), sorted(candidates)
        return result

    def _duplicate_buckets(
        self, stream: Stream, window: dict[str, int], from_position: int, to_position: int, positions: int
    ) -> tuple[set[Any], list[Any]]:
        """The position buckets of the history table, and those holding more rows than distinct positions."""
        rows = self.pinot_rows(
            f"pinot_verify_{stream.name}_buckets",
            **window,
            from_position=from_position,
            to_position=to_position,
            positions=positions,
        )
        held = {(drift.normalize(r[0]),): (drift.normalize(r[1]),) for r in rows}
        distinct = {(drift.normalize(r[0]),): (drift.normalize(r[2]),) for r in rows}
        return {key[0] for key in held}, drift.differing_buckets(held, distinct)
