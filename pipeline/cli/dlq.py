"""`nibble dlq list | replay | discard [--position N | --aggregate ID | --all] [--outbox SCHEMA]`."""

from __future__ import annotations

import argparse
import json

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.outbox import dlq


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
    schemas = [args.outbox] if args.outbox else settings.relay.outbox_schemas
    url = settings.endpoints.database_url
    if args.action == "list":
        rows = dlq.list_dead_letters(url, schemas)
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
            return 0
        for row in rows:
            print(
                f"{row['outbox']} position {row['position']} {row['event_type']} aggregate "
                f"{row['aggregate_id']} at {row['dead_lettered_at']:%Y-%m-%d %H:%M:%S}: {row['error']}"
            )
        print(f"{len(rows)} dead-lettered event(s)")
        return 0
    if args.position is not None:
        by, value = "position", args.position
    elif args.aggregate is not None:
        by, value = "aggregate", args.aggregate
    elif args.all:
        by, value = "all", None
    else:
        raise UsageError(f"say which events to {args.action}: --position, --aggregate or --all")
    action = dlq.replay if args.action == "replay" else dlq.discard
    print(f"{args.action}ed {action(url, schemas, by, value)} event(s)")
    return 0
