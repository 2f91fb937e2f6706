"""Pinot equals PostgreSQL: the one exactness check of the end-to-end, fault and backfill tests (and the soak),
then the checks of each library query against an answer computed from PostgreSQL.

A scope (`Ingested`) is a database plus the cities its data lives in (a random suffix keeps them apart from
everything else the shared tables hold); every comparison is restricted to those cities.

`compare(scope)` reads both sides and lists every difference by id:
- the state tables (`orders`, `deliveries`, `drivers`, `restaurants`, `support_tickets`): one Pinot row per
  visible PostgreSQL row, equal column by column: every schema column with a PostgreSQL source, converted as
  the triggers convert (cents, epoch milliseconds, lat/lon of a geography), and the envelope (event id and
  type, outbox position, transaction, time) of the aggregate's last committed event;
- the order ledger: per order, its entries net to one live slice, the order's dimensions with its measures
  (1 order, cancelled, GMV, subtotal, items); any other slice (a state that left) nets to zero;
- the event tables (`order_events`, `delivery_events`, `order_ledger`, `ticket_events`): every committed event
  exactly once, with its aggregate, type and envelope, and nothing else (no rolled-back work, no event never
  committed).

The committed events are those `record_committed_events` recorded: a trigger on each outbox copies every
event's envelope in the transaction that writes it, so the record holds exactly the committed events, after
the relay deleted them and even when a COMMIT's answer was lost to a PostgreSQL restart.

`assert_pinot_equals_postgres(scope)` waits for Pinot to catch up, then fails naming the first differences;
`compare(scope).report()` prints them (bench/soak.py). tests/e2e/test_exactness.py proves the check catches
a lost event, a duplicate, a stale column and rolled-back work.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import product
from typing import Any

import httpx
import pinotdb.exceptions
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from connectors.pinot import count
from pipeline.analytics.queries import run_query
from pipeline.analytics.tables import apply
from pipeline.contract import catalog
from pipeline.devstack.generator import CITIES
from pipeline.resources import PINOT
from tests.support.database import scratch_database
from tests.support.services import Services

OUTBOXES = tuple(catalog.outboxes(catalog.load()))


@dataclass(frozen=True)
class Ingested:
    db: str
    cities: list[str]
    since: datetime
    until: datetime
    pinot: Any  # a pinotdb cursor
    # On a backfilled database Pinot's event history starts when the pipeline was installed.
    history_since: datetime | None = None

    def pg(self, query: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.db) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            return conn.execute(query, params).fetchall()

    def pg_dicts(self, query: str, **params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.db, row_factory=dict_row) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            return conn.execute(query, params).fetchall()

    def pinot_rows(self, query: str, **params: Any) -> list[list]:
        self.pinot.execute(query, params)
        return [list(row) for row in self.pinot.fetchall()]

    @property
    def city_list(self) -> str:
        """The module's cities as a Pinot IN list (fixed test data, not user input)."""
        return ", ".join(f"'{city}'" for city in self.cities)


def outbox_counts(db: str, cities: list[str]) -> tuple[int, int]:
    """The order events and delivery events the outboxes hold for `cities` (the order ledger's entries aside)."""
    with psycopg.connect(db) as conn:
        orders = conn.execute(
            "SELECT count(*) FROM order_service.outbox WHERE aggregate_type = 'order' AND payload->>'city' = ANY(%s)",
            (cities,),
        ).fetchone()[0]
        deliveries = conn.execute(
            "SELECT count(*) FROM driver_service.outbox "
            "WHERE aggregate_type = 'delivery' AND payload->>'city' = ANY(%s)",
            (cities,),
        ).fetchone()[0]
    return orders, deliveries


def backlog(db: str) -> int:
    """Outbox rows waiting, of every stream (the order ledger's included)."""
    with psycopg.connect(db) as conn:
        return sum(
            conn.execute(sql.SQL("SELECT count(*) FROM {}.outbox").format(sql.Identifier(s))).fetchone()[0]
            for s in OUTBOXES
        )


# --- the record of committed events ---------------------------------------------------------------------

RECORD = """
CREATE TABLE public.committed_events (
    event_id uuid PRIMARY KEY,
    position bigint NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_type text NOT NULL,
    txid bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    city text
);
CREATE INDEX ON public.committed_events (aggregate_type, aggregate_id, position);
-- A dead letter replayed is inserted again with its id: recorded once.
CREATE FUNCTION public.record_committed_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.committed_events
    SELECT event_id, position, aggregate_type, aggregate_id, event_type, txid::text::bigint, occurred_at,
           payload->>'city'
    FROM new_rows
    ON CONFLICT (event_id) DO NOTHING;
    RETURN NULL;
END
$$;
"""
RECORD_TRIGGER = (
    "CREATE TRIGGER record_committed_events AFTER INSERT ON {}.outbox REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION public.record_committed_events()"
)


def record_committed_events(db: str) -> None:
    """From now on, every event committed to an outbox of `db` is also recorded in public.committed_events
    (in the same transaction: rolled-back work is never recorded). Call it before anything is written."""
    with psycopg.connect(db) as conn:
        conn.execute(RECORD)
        for schema in OUTBOXES:
            conn.execute(sql.SQL(RECORD_TRIGGER).format(sql.Identifier(schema)))


@dataclass(frozen=True)
class RecordedRun:
    """A migrated scratch database of one run through the stack's pipeline, and the suffix of its cities: the
    stack's Pinot tables are shared, so a run tells its rows apart by city."""

    db: str
    suffix: str

    @property
    def cities(self) -> list[str]:
        return [city + self.suffix for city in CITIES]


@contextmanager
def recorded_run(services: Services, prefix: str) -> Iterator[RecordedRun]:
    """A migrated scratch database whose committed events are recorded from the start, the stack's Pinot tables
    applied, and a random city suffix of its own."""
    with scratch_database(services.database_url, prefix, migrated=True) as db:
        record_committed_events(db)
        apply(services.settings())
        yield RecordedRun(db, f"-{uuid.uuid4().hex[:6]}")


def forget_committed_events(conn: psycopg.Connection) -> None:
    """Empty the record in `conn`'s transaction, which deletes the outboxes' rows: events never published (a
    database that predates the pipeline)."""
    conn.execute("DELETE FROM public.committed_events")


# --- differences ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One way a Pinot table differs from PostgreSQL, named by the id of the row or event."""

    table: str  # the Pinot table
    noun: str  # what `key` identifies: "order", "order_events event", "ledger of order", ...
    key: str
    kind: str  # missing | extra | duplicate | stale
    column: str = ""
    pinot: Any = None
    pg: Any = None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"missing in Pinot: {self.noun} {self.key}"
        if self.kind == "extra":
            return f"extra in Pinot: {self.noun} {self.key}"
        if self.kind == "duplicate":
            return f"duplicate in Pinot ({self.pinot} rows): {self.noun} {self.key}"
        return f"stale column {self.column} of {self.noun} {self.key}: pinot={self.pinot!r} pg={self.pg!r}"


def diff_rows(
    table: str, noun: str, key: str, expected: list[dict[str, Any]], observed: list[dict[str, Any]]
) -> list[Difference]:
    """Rows keyed by `key`: each expected row exactly once in `observed`, equal in every expected column."""
    want = {row[key]: row for row in expected}
    counts = Counter(row[key] for row in observed)
    seen = {row[key]: row for row in observed}
    found = [Difference(table, noun, k, "missing") for k in sorted(want.keys() - seen.keys())]
    found += [Difference(table, noun, k, "extra") for k in sorted(seen.keys() - want.keys())]
    found += [Difference(table, noun, k, "duplicate", pinot=n) for k, n in sorted(counts.items()) if n > 1]
    for k in sorted(want.keys() & seen.keys()):
        found += [
            Difference(table, noun, k, "stale", column, seen[k].get(column), value)
            for column, value in want[k].items()
            if seen[k].get(column) != value
        ]
    return found


LEDGER_DIMENSIONS = ("restaurant_id", "restaurant_name", "city", "cuisine", "placed_at")
LEDGER_DERIVED = ("placed_minute", "placed_hour", "placed_day")  # placed_at truncated at ingestion
LEDGER_MEASURES = ("orders", "cancelled", "gmv_cents", "subtotal_cents", "items")


def diff_ledger(expected: list[dict[str, Any]], observed: list[dict[str, Any]]) -> list[Difference]:
    """`expected`: per counted order its dimensions and measures; `observed`: Pinot's sums per order and slice
    (its dimensions). Each order nets to exactly one live slice equal to its expected row."""
    noun = "ledger of order"
    want = {row["order_id"]: row for row in expected}
    slices: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in observed:
        slices[row["order_id"]].append(row)
    found = []
    for order_id in sorted(want.keys() | slices.keys()):
        live = [row for row in slices.get(order_id, []) if any(row[m] for m in LEDGER_MEASURES)]
        if order_id not in slices:
            found.append(Difference("order_ledger", noun, order_id, "missing"))
        elif order_id not in want:
            if live:
                found.append(Difference("order_ledger", noun, order_id, "extra"))
        elif len(live) > 1:
            dimensions = [[row[d] for d in LEDGER_DIMENSIONS] for row in live]
            found.append(Difference("order_ledger", noun, order_id, "stale", "live slices", dimensions, 1))
        else:
            got = live[0] if live else {**want[order_id], **dict.fromkeys(LEDGER_MEASURES, 0)}
            found += [
                Difference("order_ledger", noun, order_id, "stale", column, got.get(column), value)
                for column, value in want[order_id].items()
                if got.get(column) != value
            ]
    return found


@dataclass(frozen=True)
class Comparison:
    rows: dict[str, int]  # per Pinot table, the rows (or events) PostgreSQL says it holds for the scope
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences

    def report(self, first: int = 20) -> str:
        held = ", ".join(f"{table} {n:,}" for table, n in self.rows.items())
        if self.equal:
            return f"Pinot equals PostgreSQL ({held})"
        kinds = Counter(f"{d.table} {d.kind}" for d in self.differences)
        lines = [
            f"Pinot differs from PostgreSQL in {len(self.differences):,} places "
            f"({', '.join(f'{k}: {n:,}' for k, n in sorted(kinds.items()))}; PostgreSQL holds {held}); "
            f"the first {min(first, len(self.differences))}:"
        ]
        return "\n  ".join(lines + [str(d) for d in self.differences[:first]])


# --- what each Pinot table must hold --------------------------------------------------------------------


def _ms(expression: str) -> str:
    """Epoch milliseconds as Avro's timestamp-millis carries them (PostgreSQL's microseconds truncated)."""
    return f"(extract(epoch FROM date_trunc('milliseconds', {expression})) * 1000)::bigint"


def _cents(expression: str) -> str:
    return f"({expression} * 100)::bigint"


def _lat(geography: str) -> str:
    return f"public.st_y({geography}::public.geometry)"


def _lon(geography: str) -> str:
    return f"public.st_x({geography}::public.geometry)"


def _coarse(coordinate: str) -> str:
    """A drop-off coordinate as the payloads publish it since migration 0027."""
    return f"public.coarse_coordinate({coordinate})"


# Since migration 0027 no event carries the customer's id: Pinot holds its null.
NO_USER_ID = "NULL::text"


# The envelope of an aggregate's newest event (as Pinot's upsert keeps it), from the record.
ENVELOPE = {
    "event_id": "last.event_id::text",
    "event_type": "last.event_type",
    "outbox_position": "last.position",
    "source_txid": "last.txid",
    "occurred_at": _ms("last.occurred_at"),
}


@dataclass(frozen=True)
class StateTable:
    """A Pinot upsert table and the PostgreSQL rows (alias `t`, key `t.id`) it mirrors."""

    table: str
    noun: str
    key: str  # Pinot's primary key column
    aggregate_type: str
    source: str  # the PostgreSQL table
    visible: str  # the condition for a row to be published, beside its city
    columns: dict[str, str]  # Pinot column -> PostgreSQL expression

    def pg_query(self) -> str:
        columns = {self.key: "t.id::text", **ENVELOPE, **self.columns}
        return (
            f"SELECT {', '.join(f'{expr} AS {name}' for name, expr in columns.items())} FROM {self.source} t "
            "LEFT JOIN LATERAL (SELECT * FROM public.committed_events c WHERE c.aggregate_type = "
            f"'{self.aggregate_type}' AND c.aggregate_id = t.id ORDER BY c.position DESC LIMIT 1) last ON true "
            f"WHERE t.city = ANY(%(cities)s) AND {self.visible}"
        )

    @property
    def pinot_columns(self) -> list[str]:
        return [self.key, *ENVELOPE, *self.columns]


# A ticket with what the ticket stream reads of its order and its comments (its own alias `t`, like a table).
TICKETS = """(
    SELECT k.*, o.restaurant_id, o.city, c.comment_count, c.first_response_at
    FROM admin_service.support_tickets k
    LEFT JOIN order_service.orders o ON o.id = k.order_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS comment_count,
               min(x.created_at) FILTER (WHERE NOT coalesce(x.is_internal, false) AND x.user_id <> k.user_id)
                   AS first_response_at
        FROM admin_service.ticket_comments x
        WHERE x.ticket_id = k.id
    ) c
)"""
STATE_TABLES = (
    StateTable(
        "orders",
        "order",
        "order_id",
        "order",
        "order_service.orders",
        "order_service.is_visible(t)",
        {
            "user_id": NO_USER_ID,
            "customer_pseudonym": "t.customer_pseudonym::text",
            "restaurant_id": "t.restaurant_id::text",
            "restaurant_name": "t.restaurant_name",
            "city": "t.city",
            "cuisine": "t.cuisine",
            "status": "t.status",
            "currency": "t.currency",
            "payment_status": "t.payment_status",
            "cancel_reason": "t.cancel_reason",
            "delivery_lat": _coarse(_lat("t.delivery_location")),
            "delivery_lon": _coarse(_lon("t.delivery_location")),
            "placed_minute": _ms("date_trunc('minute', t.placed_at)"),
            "item_count": "t.item_count",
            "subtotal_cents": _cents("t.subtotal"),
            "delivery_fee_cents": _cents("t.delivery_fee"),
            "tip_cents": _cents("t.tip"),
            "total_cents": _cents("t.total"),
            "placed_at": _ms("t.placed_at"),
            "promised_at": _ms("t.promised_at"),
            "updated_at": _ms("t.updated_at"),
        },
    ),
    StateTable(
        "deliveries",
        "delivery",
        "delivery_id",
        "delivery",
        "driver_service.deliveries",
        "true",
        {
            "order_id": "t.order_id::text",
            "driver_id": "t.driver_id::text",
            "restaurant_id": "t.restaurant_id::text",
            "city": "t.city",
            "status": "t.status",
            "pickup_lat": _lat("t.pickup_location"),
            "pickup_lon": _lon("t.pickup_location"),
            "dropoff_lat": _coarse(_lat("t.dropoff_location")),
            "dropoff_lon": _coarse(_lon("t.dropoff_location")),
            "distance_m": "t.distance_m",
            "created_at": _ms("t.created_at"),
            "promised_at": _ms("t.promised_at"),
            "assigned_at": _ms("t.assigned_at"),
            "picked_up_at": _ms("t.picked_up_at"),
            "delivered_at": _ms("t.delivered_at"),
            "updated_at": _ms("t.updated_at"),
        },
    ),
    StateTable(
        "drivers",
        "driver",
        "driver_id",
        "driver",
        "driver_service.drivers",
        "true",
        {
            "city": "t.city",
            "vehicle_type": "t.vehicle_type",
            "status": "t.status",
            "is_active": "t.is_active AND t.deleted_at IS NULL",
            "updated_at": _ms("t.updated_at"),
        },
    ),
    StateTable(
        "restaurants",
        "restaurant",
        "restaurant_id",
        "restaurant",
        "restaurant_service.restaurants",
        "true",
        {
            "name": "t.name",
            "city": "t.city",
            "cuisines": "t.cuisine_types",
            "lat": _lat("t.location"),
            "lon": _lon("t.location"),
            "rating": "t.rating::double precision",
            "is_active": "t.is_active AND t.deleted_at IS NULL",
            "updated_at": _ms("t.updated_at"),
            "prep_time_minutes": "t.prep_time_minutes",
        },
    ),
    StateTable(
        "support_tickets",
        "ticket",
        "ticket_id",
        "ticket",
        TICKETS,
        "true",
        {
            "user_id": NO_USER_ID,
            "customer_pseudonym": "t.customer_pseudonym::text",
            "order_id": "t.order_id::text",
            "restaurant_id": "t.restaurant_id::text",
            "city": "t.city",
            "status": "t.status",
            "priority": "t.priority",
            "assigned_to": "t.assigned_to::text",
            "comment_count": "t.comment_count",
            "created_at": _ms("t.created_at"),
            "first_response_at": _ms("t.first_response_at"),
            "resolved_at": _ms("t.resolved_at"),
            "closed_at": _ms("CASE WHEN t.status = 'closed' THEN t.updated_at END"),
            "updated_at": _ms("t.updated_at"),
        },
    ),
)
# Columns Pinot derives at ingestion from columns compared above (the drop-off and pickup points of the
# radius query, from their lat/lon: checked by check_deliveries_within_radius), and a ticket's last comment
# author and visibility, which only its TicketCommented events carry (PostgreSQL cannot tell which comment an
# event of a many-row statement was last for).
NOT_COMPARED = {
    "deliveries": {"pickup_point", "dropoff_point"},
    "support_tickets": {"comment_author_id", "comment_is_internal"},
}

# The counted orders and what the ledger's entries of each must net to (docs/events.md, "The order ledger").
LEDGER_PG = f"""
SELECT t.id::text AS order_id, t.restaurant_id::text AS restaurant_id, t.restaurant_name, t.city, t.cuisine,
       {_ms("t.placed_at")} AS placed_at, {_ms("date_trunc('minute', t.placed_at)")} AS placed_minute,
       {_ms("date_trunc('hour', t.placed_at)")} AS placed_hour, {_ms("date_trunc('day', t.placed_at)")} AS placed_day,
       1 AS orders, (t.status = 'cancelled')::int AS cancelled,
       CASE WHEN t.status = 'cancelled' THEN 0 ELSE {_cents("t.total")} END AS gmv_cents,
       CASE WHEN t.status = 'cancelled' THEN 0 ELSE {_cents("t.subtotal")} END AS subtotal_cents,
       CASE WHEN t.status = 'cancelled' THEN 0 ELSE t.item_count END AS items
FROM order_service.orders t
WHERE t.city = ANY(%(cities)s) AND order_service.is_visible(t)
  AND NOT EXISTS (SELECT 1 FROM order_service.orders_outside_ledger l WHERE l.order_id = t.id)
"""
LEDGER_GROUP = ("order_id", *LEDGER_DIMENSIONS, *LEDGER_DERIVED)


@dataclass(frozen=True)
class EventTable:
    table: str
    aggregate_type: str
    aggregate_key: str  # the aggregate's id column

    @property
    def noun(self) -> str:
        return f"{self.table} event"

    @property
    def columns(self) -> list[str]:
        return ["event_id", self.aggregate_key, "event_type", "outbox_position", "source_txid", "occurred_at"]

    def pg_query(self) -> str:
        return (
            f"SELECT event_id::text, aggregate_id::text AS {self.aggregate_key}, event_type, "
            f"position AS outbox_position, txid AS source_txid, {_ms('occurred_at')} AS occurred_at "
            f"FROM public.committed_events WHERE aggregate_type = '{self.aggregate_type}' AND city = ANY(%(cities)s)"
        )


EVENT_TABLES = (
    EventTable("order_events", "order", "order_id"),
    EventTable("delivery_events", "delivery", "delivery_id"),
    EventTable("order_ledger", "order_ledger", "order_id"),
    EventTable("ticket_events", "ticket", "ticket_id"),
)


def pinot_schema(table: str) -> dict[str, Any]:
    return json.loads((PINOT / "schemas" / f"{table}.json").read_text())


def _null_values(table: str) -> dict[str, Any]:
    """What Pinot 0.11 stores for a null, per column: its defaultNullValue, else the type's default (a
    dimension or time: the type's minimum, -Infinity or "null"; a metric: 0)."""
    schema = pinot_schema(table)
    dimension = {"INT": -(2**31), "LONG": -(2**63), "FLOAT": float("-inf"), "DOUBLE": float("-inf")}
    dimension |= {"STRING": "null", "BOOLEAN": False, "BYTES": ""}
    nulls = {}
    for kind in ("dimensionFieldSpecs", "metricFieldSpecs", "dateTimeFieldSpecs"):
        for spec in schema.get(kind, []):
            default = 0 if kind == "metricFieldSpecs" and spec["dataType"] != "STRING" else dimension[spec["dataType"]]
            nulls[spec["name"]] = spec.get("defaultNullValue", default)
    return nulls


def _as_pinot(row: dict[str, Any], nulls: dict[str, Any]) -> dict[str, Any]:
    return {column: nulls[column] if value is None else value for column, value in row.items()}


# --- reading both sides ---------------------------------------------------------------------------------

SLICE_ROWS = 50_000  # rows per Pinot query at most (its group-by keeps 100,000 groups per server)


def slice_prefixes(rows: int) -> list[str]:
    """Id prefixes that split `rows` into slices of at most SLICE_ROWS (uuids: hex digits)."""
    length = 0
    while rows > SLICE_ROWS * 16**length:
        length += 1
    return ["".join(p) for p in product("0123456789abcdef", repeat=length)]


def _pinot_dicts(
    scope: Ingested, table: str, columns: list[str], key: str, rows: int, group: bool = False
) -> list[dict[str, Any]]:
    """Pinot's rows of `table` in the scope's cities (as dicts of `columns`), read in slices by `key` prefix.
    `group`: `columns` are the group-by columns followed by sums of LEDGER_MEASURES."""
    found = []
    for prefix in slice_prefixes(rows):
        where = f"city IN ({scope.city_list})" + (f" AND {key} LIKE '{prefix}%'" if prefix else "")
        if group:
            select = ", ".join([*columns, *(f"SUM({m})" for m in LEDGER_MEASURES)])
            query = f"SELECT {select} FROM {table} WHERE {where} GROUP BY {', '.join(columns)} LIMIT 1000000"
            names = [*columns, *LEDGER_MEASURES]
        else:
            query = f"SELECT {', '.join(columns)} FROM {table} WHERE {where} LIMIT 1000000"
            names = columns
        for values in scope.pinot_rows(query):
            row = dict(zip(names, values, strict=True))
            if group:
                row |= {m: int(row[m]) for m in LEDGER_MEASURES}
            found.append(row)
    return found


def _require_record(scope: Ingested) -> None:
    [(recorded,)] = scope.pg("SELECT to_regclass('public.committed_events') IS NOT NULL")
    if not recorded:
        raise AssertionError(f"{scope.db} keeps no record of committed events: call record_committed_events first")


def compare_state(scope: Ingested, spec: StateTable, table: str | None = None) -> tuple[int, list[Difference]]:
    """One state table (or `table`, a copy of it) against PostgreSQL: the rows expected and the differences."""
    nulls = _null_values(spec.table)
    expected = [_as_pinot(row, nulls) for row in scope.pg_dicts(spec.pg_query(), cities=scope.cities)]
    observed = _pinot_dicts(scope, table or spec.table, spec.pinot_columns, spec.key, len(expected))
    return len(expected), diff_rows(table or spec.table, spec.noun, spec.key, expected, observed)


def compare(scope: Ingested, tables: Collection[str] | None = None) -> Comparison:
    """Every Pinot table (or those named in `tables`) against PostgreSQL, restricted to the scope's cities (one
    look, no waiting)."""
    _require_record(scope)
    rows: dict[str, int] = {}
    differences: list[Difference] = []
    for spec in STATE_TABLES:
        if tables is None or spec.table in tables:
            rows[spec.table], found = compare_state(scope, spec)
            differences += found
    if tables is None or "order_ledger" in tables:
        expected = scope.pg_dicts(LEDGER_PG, cities=scope.cities)
        observed = _pinot_dicts(scope, "order_ledger", list(LEDGER_GROUP), "order_id", len(expected), group=True)
        rows["order_ledger (orders)"] = len(expected)
        differences += diff_ledger(expected, observed)
    for events in _event_tables(tables):
        expected = scope.pg_dicts(events.pg_query(), cities=scope.cities)
        observed = _pinot_dicts(scope, events.table, events.columns, "event_id", len(expected))
        rows[events.table] = len(expected)
        differences += diff_rows(events.table, events.noun, "event_id", expected, observed)
    return Comparison(rows, differences)


def _event_tables(tables: Collection[str] | None) -> list[EventTable]:
    return [events for events in EVENT_TABLES if tables is None or events.table in tables]


def events_counted(scope: Ingested, tables: Collection[str] | None = None) -> bool:
    """Pinot's event tables hold as many events of the scope as PostgreSQL committed (a cheap look, to wait
    on before comparing row by row); False while Pinot does not answer."""
    want = dict(
        scope.pg(
            "SELECT aggregate_type, count(*) FROM public.committed_events WHERE city = ANY(%s) GROUP BY 1",
            scope.cities,
        )
    )
    try:
        for events in _event_tables(tables):
            counted = count(scope.pinot, f"SELECT COUNT(*) FROM {events.table} WHERE city IN ({scope.city_list})")
            if counted != want.get(events.aggregate_type, 0):
                return False
    except (pinotdb.exceptions.Error, httpx.HTTPError):  # the broker or a server may be on its way back
        return False
    return True


def await_pinot(scope: Ingested, timeout_s: float = 300, tables: Collection[str] | None = None) -> Comparison:
    """Wait until Pinot equals PostgreSQL for the scope (in `tables`, else every table) or `timeout_s` passed;
    the last comparison."""
    deadline = time.monotonic() + timeout_s
    while True:
        if events_counted(scope, tables) or time.monotonic() >= deadline:
            comparison = compare(scope, tables)
            if comparison.equal or time.monotonic() >= deadline:
                return comparison
        time.sleep(1)


def assert_pinot_equals_postgres(scope: Ingested, timeout_s: float = 300) -> Comparison:
    """Wait until Pinot equals PostgreSQL for the scope; after `timeout_s` fail naming the first differences."""
    comparison = await_pinot(scope, timeout_s)
    assert comparison.equal, comparison.report()
    return comparison


# --- the order ledger's sums: what a test waits for before it compares the library's answers ---


def ledger_ingested(ingested: Ingested) -> bool:
    """Pinot's order ledger sums, per city, to PostgreSQL's visible orders (count, cancelled, GMV, items): the
    library's order queries read the ledger, which Pinot ingests from a topic of its own, so a test waits for
    this as well as for the order events before it compares their answers."""
    truth = ingested.pg(
        "SELECT city, count(*), count(*) FILTER (WHERE status = 'cancelled'), "
        "coalesce(sum(total * 100) FILTER (WHERE status <> 'cancelled'), 0)::bigint, "
        "coalesce(sum(item_count) FILTER (WHERE status <> 'cancelled'), 0) "
        "FROM order_service.orders o WHERE city = ANY(%s) AND order_service.is_visible(o) GROUP BY 1 ORDER BY 1",
        ingested.cities,
    )
    pinot = ingested.pinot_rows(
        f"SELECT city, SUM(orders), SUM(cancelled), SUM(gmv_cents), SUM(items) FROM order_ledger "
        f"WHERE city IN ({ingested.city_list}) GROUP BY city ORDER BY city LIMIT 1000"
    )
    return [(city, *(int(value) for value in sums)) for city, *sums in pinot] == [tuple(row) for row in truth]


# --- the query library against PostgreSQL ---------------------------------------------------------------


def q(ingested: Ingested, name: str, **params: Any) -> list[list]:
    """The library's rows, its times back in epoch milliseconds as the PostgreSQL side computes them."""
    params.setdefault("since", ingested.since)
    params.setdefault("until", ingested.until)
    rows = run_query(ingested.pinot, name, **params).rows
    return [[round(v.timestamp() * 1000) if isinstance(v, datetime) else v for v in row] for row in rows]


def check_orders_per_minute(ingested: Ingested) -> None:
    city = ingested.cities[0]
    truth = ingested.pg(
        "SELECT (extract(epoch FROM date_trunc('minute', placed_at)) * 1000)::bigint, status, count(*) "
        "FROM order_service.orders WHERE city = %s GROUP BY 1, 2 ORDER BY 1, 2",
        city,
    )
    assert [tuple(row) for row in q(ingested, "orders_per_minute", city=city)] == [tuple(r) for r in truth]


def _check_gmv(ingested: Ingested, name: str, column: str, grain: str) -> None:
    city = ingested.cities[1]
    truth = ingested.pg(
        sql.SQL(
            "SELECT {col}::text, (extract(epoch FROM date_trunc(%s, placed_at)) * 1000)::bigint, "
            "sum(total * 100)::bigint, count(*) FROM order_service.orders "
            "WHERE city = %s AND status <> 'cancelled' GROUP BY 1, 2"
        )
        .format(col=sql.Identifier(column))
        .as_string(),
        grain,
        city,
    )
    rows = q(ingested, name, city=city, grain=grain)
    assert sorted((row[0], row[-3], int(row[-2]), row[-1]) for row in rows) == sorted(tuple(r) for r in truth)


def check_gmv_by_city(ingested: Ingested) -> None:
    _check_gmv(ingested, "gmv_by_city", "city", "hour")


def check_gmv_by_cuisine(ingested: Ingested) -> None:
    _check_gmv(ingested, "gmv_by_cuisine", "cuisine", "day")


def check_gmv_by_restaurant(ingested: Ingested) -> None:
    _check_gmv(ingested, "gmv_by_restaurant", "restaurant_id", "hour")


def check_average_basket(ingested: Ingested) -> None:
    truth = dict(
        (city, (float(subtotal), float(items), n))
        for city, subtotal, items, n in ingested.pg(
            "SELECT city, avg(subtotal * 100), avg(item_count), count(*) FROM order_service.orders "
            "WHERE city = ANY(%s) AND status <> 'cancelled' GROUP BY 1",
            ingested.cities,
        )
    )
    for city in ingested.cities:
        [[name, subtotal, items, n]] = q(ingested, "average_basket", city=city)
        assert name == city and n == truth[city][2]
        assert subtotal == pytest.approx(truth[city][0], rel=1e-9)
        assert items == pytest.approx(truth[city][1], rel=1e-9)


def check_cancellation_rate(ingested: Ingested) -> None:
    city = ingested.cities[2]
    truth = {
        str(rid): (n, cancelled)
        for rid, n, cancelled in ingested.pg(
            "SELECT restaurant_id, count(*), count(*) FILTER (WHERE status = 'cancelled') "
            "FROM order_service.orders WHERE city = %s GROUP BY 1",
            city,
        )
    }
    rows = q(ingested, "cancellation_rate", city=city)
    assert {rid: (n, int(c)) for rid, _, n, c, _ in rows} == truth
    rates = [rate for *_, rate in rows]
    assert rates == sorted(rates, reverse=True)
    assert all(rate == pytest.approx(c / n) for _, _, n, c, rate in rows)


def _pinot_percentile(values: list[int], percentile: int) -> float:
    """Pinot's exact PERCENTILE: the value at index size * p / 100 (integer division) of the sorted values."""
    ordered = sorted(values)
    return float(ordered[min(len(ordered) * percentile // 100, len(ordered) - 1)])


def _delivered_since(ingested: Ingested) -> datetime:
    """The delivery queries count each delivery's completion event: on a backfilled database, only those
    delivered since the installation have one (a snapshot is not a completion)."""
    return ingested.history_since or datetime.min.replace(tzinfo=UTC)


def check_delivery_time_percentiles(ingested: Ingested) -> None:
    city = ingested.cities[0]
    durations: dict[int, list[int]] = {}
    for hour, ms in ingested.pg(
        "SELECT (extract(epoch FROM date_trunc('hour', delivered_at)) * 1000)::bigint, "
        "(extract(epoch FROM delivered_at - created_at) * 1000)::bigint FROM driver_service.deliveries "
        "WHERE city = %s AND status = 'delivered' AND delivered_at >= %s",
        city,
        _delivered_since(ingested),
    ):
        durations.setdefault(hour, []).append(ms)
    rows = q(ingested, "delivery_time_percentiles", city=city)
    assert [row[1] for row in rows] == sorted(durations)
    for _, hour, n, p50, p90, p99 in rows:
        assert n == len(durations[hour])
        for got, percentile in ((p50, 50), (p90, 90), (p99, 99)):
            assert got == pytest.approx(_pinot_percentile(durations[hour], percentile) / 60000)


def check_late_deliveries(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, count(*), count(*) FILTER (WHERE delivered_at > promised_at) FROM driver_service.deliveries "
        "WHERE city = ANY(%s) AND status = 'delivered' AND delivered_at >= %s GROUP BY 1 ORDER BY 1",
        ingested.cities,
        _delivered_since(ingested),
    )
    got = [(c, n, int(late)) for city in ingested.cities for c, n, late, _ in q(ingested, "late_deliveries", city=city)]
    assert sorted(got) == [tuple(row) for row in truth]


def check_active_orders(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, status, count(*) FROM order_service.orders WHERE city = ANY(%s) "
        "AND status NOT IN ('delivered', 'cancelled') GROUP BY 1, 2 ORDER BY 1, 2",
        ingested.cities,
    )
    assert truth, "the fixture leaves some orders under way"
    got = [tuple(row) for city in ingested.cities for row in q(ingested, "active_orders", city=city)]
    assert sorted(got) == [tuple(row) for row in truth]


def check_active_deliveries(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT city, status, count(*) FROM driver_service.deliveries WHERE city = ANY(%s) "
        "AND status IN ('pending', 'assigned', 'picked_up') GROUP BY 1, 2 ORDER BY 1, 2",
        ingested.cities,
    )
    got = [tuple(row) for city in ingested.cities for row in q(ingested, "active_deliveries", city=city)]
    assert sorted(got) == [tuple(row) for row in truth]


def check_driver_utilisation(ingested: Ingested) -> None:
    city = ingested.cities[3]
    truth = {
        str(driver): (n, int(busy_ms))
        for driver, n, busy_ms in ingested.pg(
            # Avro carries milliseconds: truncate PostgreSQL's microseconds the same way.
            "SELECT driver_id, count(*), sum(extract(epoch FROM date_trunc('milliseconds', delivered_at) "
            "- date_trunc('milliseconds', assigned_at)) * 1000) "
            "FROM driver_service.deliveries WHERE city = %s AND status = 'delivered' AND delivered_at >= %s GROUP BY 1",
            city,
            _delivered_since(ingested),
        )
    }
    rows = q(ingested, "driver_utilisation", city=city)
    window_ms = (ingested.until - ingested.since).total_seconds() * 1000
    assert {driver: (n, round(busy_min * 60000)) for driver, _, n, busy_min, _ in rows} == truth
    assert all(share == pytest.approx(busy_min * 60000 / window_ms, rel=1e-3) for *_, busy_min, share in rows)


def check_top_restaurants(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT restaurant_id::text, sum(total * 100)::bigint, count(*) FROM order_service.orders "
        "WHERE city = ANY(%s) AND status <> 'cancelled' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        ingested.cities,
    )
    rows = [row for city in ingested.cities for row in q(ingested, "top_restaurants", city=city, limit=5)]
    best = sorted(((rid, int(gmv), n) for rid, _, _, gmv, n in rows), key=lambda r: (-r[1], r[0]))[:5]
    assert best == [tuple(row) for row in truth]


def check_deliveries_within_radius(ingested: Ingested) -> None:
    city = ingested.cities[0]
    lat, lon = CITIES[city.rsplit("-", 1)[0]]
    radius = 2000.0
    distances = {
        str(delivery): metres
        for delivery, metres in ingested.pg(
            # from the drop-off point as published (migration 0027's cell), as Pinot has it
            "SELECT id, ST_Distance(ST_SetSRID(ST_MakePoint("
            "public.coarse_coordinate(ST_X(dropoff_location::geometry)), "
            "public.coarse_coordinate(ST_Y(dropoff_location::geometry))), 4326)::geography, "
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, false) "
            "FROM driver_service.deliveries WHERE city = %s",
            lon,
            lat,
            city,
        )
    }
    # Room for every delivery of the city: an answer cut at its limit leaves out some inside the radius (the
    # soak's 60 simulated days put about 18,000 of a city's deliveries inside it).
    limit = max(10_000, len(distances))
    rows = q(ingested, "deliveries_within_radius", city=city, lat=lat, lon=lon, radius_m=radius, limit=limit)
    inside = {row[0] for row in rows}
    clear_of_boundary = {d for d, m in distances.items() if abs(m - radius) > radius * 0.01}
    assert inside & clear_of_boundary == {d for d in clear_of_boundary if distances[d] < radius}
    assert [row[-1] for row in rows] == sorted(row[-1] for row in rows)
    assert len(inside) > 0


def check_funnel(ingested: Ingested) -> None:
    truth = ingested.pg(
        "SELECT h.to_status, count(*) FROM order_service.order_status_history h "
        "JOIN order_service.orders o ON o.id = h.order_id WHERE o.city = %s AND h.changed_at >= %s "
        "AND h.to_status IN ('placed', 'confirmed', 'picked_up', 'delivered') GROUP BY 1",
        ingested.cities[1],
        ingested.history_since or datetime.min.replace(tzinfo=UTC),
    )
    rows = q(ingested, "funnel", city=ingested.cities[1])
    assert sorted(tuple(row) for row in rows) == sorted(tuple(row) for row in truth)
    stages = dict(truth)
    if ingested.history_since is None:
        assert stages["placed"] >= stages["confirmed"] >= stages["picked_up"] >= stages["delivered"] > 0
    else:  # only the steps taken since: snapshots are not steps
        assert stages


# Each library query, checked against the answer computed from PostgreSQL.
QUERY_CHECKS: dict[str, Callable[[Ingested], None]] = {
    "orders_per_minute": check_orders_per_minute,
    "gmv_by_city": check_gmv_by_city,
    "gmv_by_cuisine": check_gmv_by_cuisine,
    "gmv_by_restaurant": check_gmv_by_restaurant,
    "average_basket": check_average_basket,
    "cancellation_rate": check_cancellation_rate,
    "delivery_time_percentiles": check_delivery_time_percentiles,
    "late_deliveries": check_late_deliveries,
    "active_orders": check_active_orders,
    "active_deliveries": check_active_deliveries,
    "driver_utilisation": check_driver_utilisation,
    "top_restaurants": check_top_restaurants,
    "deliveries_within_radius": check_deliveries_within_radius,
    "funnel": check_funnel,
}
