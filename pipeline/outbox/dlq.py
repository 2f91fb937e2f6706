"""`nibble dlq list | replay | discard`: the operator's hands on dead-lettered (poison) events.

Replay moves rows back into their outbox with the position and event id they had, so a parked aggregate's
events go out in their original order once the cause is fixed. Discard deletes them, which un-parks the
aggregate. Both need a role that may write the outbox (the service owner, not `nibble_relay`).
"""

from __future__ import annotations

import argparse
import json

from psycopg import sql
from psycopg.rows import dict_row

from connectors import postgres
from pipeline.config import Settings


def _selection(args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    if args.position is not None:
        return "position = %(value)s", {"value": args.position}
    if args.aggregate is not None:
        return "aggregate_id = %(value)s::uuid", {"value": args.aggregate}
    return "true", {}


def list_dead_letters(settings: Settings, schema: str) -> list[dict[str, object]]:
    with postgres.connect(settings.postgres_url, "nibble-dlq") as conn:
        cursor = conn.cursor(row_factory=dict_row)
        return cursor.execute(postgres.schema_sql("dead_letter_list", schema)).fetchall()


def replay(settings: Settings, schema: str, where: str, params: dict[str, object]) -> int:
    with postgres.connect(settings.postgres_url, "nibble-dlq") as conn, conn.transaction():
        query = postgres.schema_sql("dead_letter_replay", schema, where=_where(where))
        return conn.execute(query, params).rowcount


def discard(settings: Settings, schema: str, where: str, params: dict[str, object]) -> int:
    with postgres.connect(settings.postgres_url, "nibble-dlq") as conn, conn.transaction():
        query = postgres.schema_sql("dead_letter_discard", schema, where=_where(where))
        return conn.execute(query, params).rowcount


def _where(condition: str) -> sql.SQL:
    """The row filter: one of the fixed conditions of _selection, values always bound as parameters."""
    return sql.SQL(condition)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dlq", help="list, replay or discard dead-lettered events")
    parser.add_argument("action", choices=["list", "replay", "discard"])
    parser.add_argument("--outbox", help="one outbox schema (default: every outbox the relay serves)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--position", type=int, help="one event, by outbox position")
    target.add_argument("--aggregate", help="every event of one aggregate id")
    target.add_argument("--all", action="store_true", help="every dead-lettered event")
    parser.add_argument("--json", action="store_true", help="list as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    schemas = [args.outbox] if args.outbox else settings.outbox_schemas
    if args.action == "list":
        rows = [row | {"outbox": schema} for schema in schemas for row in list_dead_letters(settings, schema)]
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        else:
            for row in rows:
                print(
                    f"{row['outbox']} position {row['position']} {row['event_type']} aggregate "
                    f"{row['aggregate_id']} at {row['dead_lettered_at']:%Y-%m-%d %H:%M:%S}: {row['error']}"
                )
            print(f"{len(rows)} dead-lettered event(s)")
        return 0
    if args.position is None and args.aggregate is None and not args.all:
        print(f"nibble dlq {args.action}: say which events: --position, --aggregate or --all")
        return 2
    where, params = _selection(args)
    action = replay if args.action == "replay" else discard
    count = sum(action(settings, schema, where, params) for schema in schemas)
    print(f"{args.action}ed {count} event(s)")
    return 0
