"""`nibble pinot apply [--dry-run] | status | rebuild TABLE`."""

from __future__ import annotations

import argparse

from pipeline.analytics import rebuild, tables
from pipeline.config import Settings
from pipeline.contract import catalog


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pinot", help="apply the checked-in Pinot schemas and tables")
    actions = parser.add_subparsers(dest="action", required=True)
    apply_parser = actions.add_parser("apply", help="create or update schemas and tables (idempotent)")
    apply_parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    actions.add_parser(
        "status", help="per table: realtime and offline rows, time boundary, oldest realtime segment, heap keys"
    )
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
    _status(settings)
    return 0


def _status(settings: Settings) -> None:
    p = settings.pinot
    print(
        f"window {p.realtime_window} (NIBBLE_PINOT_REALTIME_WINDOW); the minion moves {p.history_bucket} buckets "
        f"{p.history_buffer} after they end, every {p.minion_schedule}"
    )
    print(
        f"{'table':<22}{'stream':<14}{'keys':<8}{'realtime rows':>14}{'offline rows':>14}  {'time boundary':<18}"
        f"{'oldest segment ends':<21}{'segments':>8}"
    )
    streams = {
        settings.pinot.table_prefix + table: stream.aggregate_type
        for stream in catalog.load().values()
        for table in stream.pinot_tables
    }
    statuses = tables.table_status(settings)
    for t in statuses:
        offline = "-" if t.offline_rows is None else f"{t.offline_rows:,}"
        print(
            f"{t.name:<22}{streams.get(t.name, '-'):<14}{t.keys:<8}{t.realtime_rows:>14,}{offline:>14}  "
            f"{tables.moment(t.boundary_ms):<18}{tables.moment(t.oldest_segment_end_ms):<21}{t.realtime_segments:>8}"
        )
    for kind in ("dedup", "upsert"):
        held = [t for t in statuses if t.keys == kind]
        keys, heap = sum(t.heap_keys for t in held), sum(t.heap_bytes for t in held)
        print(f"{kind} keys on the server's heap: {keys:,} (about {heap / 2**20:,.1f} MiB)")


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
