"""`nibble pinot apply [--dry-run] | status | rebuild TABLE`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pipeline.analytics import rebuild, tables
from pipeline.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pinot", help="apply the checked-in Pinot schemas and tables")
    actions = parser.add_subparsers(dest="action", required=True)
    apply_parser = actions.add_parser("apply", help="create or update schemas and tables (idempotent)")
    apply_parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    actions.add_parser("status", help="each table's row count and newest event time")
    rebuild_parser = actions.add_parser(
        "rebuild",
        help="drop one table, create it again, refill it (from Kafka, else by a backfill) and compare with PostgreSQL",
    )
    rebuild_parser.add_argument("table", metavar="TABLE", help="a table of pinot/tables/, e.g. orders")
    rebuild_parser.add_argument("--timeout", type=float, default=600, help="seconds each step may take (600)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "apply":
        changes = tables.apply(settings, dry_run=args.dry_run)
        for change in changes:
            print(("would " if args.dry_run else "") + change)
        print(f"{len(changes)} change(s){' (dry run)' if args.dry_run else ''}")
        return 0
    if args.action == "rebuild":
        return _rebuild(args, settings)
    for name, count, newest in tables.table_counts(settings):
        when = datetime.fromtimestamp(newest / 1000, UTC).isoformat(timespec="seconds") if newest else "-"
        print(f"{name:<18}{count:>12} rows  newest event at {when}")
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    spec = rebuild.spec_named(settings, args.table)
    report = rebuild.rebuild(settings, spec, args.timeout, on_step=lambda message: print(message, flush=True))
    if report.postgres_rows is None:
        print(f"{report.table}: {report.pinot_rows:,} events in Pinot, the whole topic read ({report.seconds:.0f} s)")
        return 0
    verdict = "equal" if report.equal else f"differs by {report.pinot_rows - report.postgres_rows:+,}"
    print(
        f"{report.table}: {report.pinot_rows:,} rows in Pinot, {report.postgres_rows:,} in PostgreSQL: {verdict} "
        f"({report.seconds:.0f} s)"
    )
    if not report.equal:
        print(f"{report.table}: rows never published are missing; `nibble backfill --restart` sends every row")
    return 0 if report.equal else 1
