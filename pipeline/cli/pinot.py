"""`nibble pinot apply [--dry-run] | status`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pipeline.analytics import tables
from pipeline.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pinot", help="apply the checked-in Pinot schemas and tables")
    actions = parser.add_subparsers(dest="action", required=True)
    apply_parser = actions.add_parser("apply", help="create or update schemas and tables (idempotent)")
    apply_parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    actions.add_parser("status", help="each table's row count and newest event time")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "apply":
        changes = tables.apply(settings, dry_run=args.dry_run)
        for change in changes:
            print(("would " if args.dry_run else "") + change)
        print(f"{len(changes)} change(s){' (dry run)' if args.dry_run else ''}")
        return 0
    for name, count, newest in tables.table_counts(settings):
        when = datetime.fromtimestamp(newest / 1000, UTC).isoformat(timespec="seconds") if newest else "-"
        print(f"{name:<18}{count:>12} rows  newest event at {when}")
    return 0
