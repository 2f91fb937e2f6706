"""`nibble relay [run] | status [--json]`."""

from __future__ import annotations

import argparse
import json

from pipeline import json_logging
from pipeline.config import Settings
from pipeline.outbox import relay


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("relay", help="publish outbox events to Kafka (a long-running daemon)")
    parser.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "run":
        json_logging.configure()
        relay.Relay(settings).run()
        return 0
    rows = relay.status(settings)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'outbox':<20}{'backlog':>9}{'oldest (s)':>12}{'dead':>6}  leader")
    for row in rows:
        leader = f"pid {row['leader_pid']}" if row["leader_pid"] else "none"
        counts = f"{row['backlog_rows']:>9}{row['oldest_age_s']:>12}{row['dead_letter_rows']:>6}"
        print(f"{row['outbox']:<20}{counts}  {leader}")
    return 0
