"""`nibble backfill [TABLE...] [--since TIME] [--batch N] [--max-rate ROWS/S] [--restart]`."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from pipeline.config import Settings
from pipeline.outbox.backfill import TABLES, Backfill, Progress

PRINT_EVERY_S = 1.0


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r} (e.g. 2026-11-01T00:00:00+00:00)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="write one snapshot event per existing row into the outboxes (resumable, throttled)",
        description="Bring rows that existed before the pipeline into Pinot: one snapshot event per row of each "
        "TABLE, in chunks by primary key; progress is kept in PostgreSQL, so a killed run resumes. "
        "The relay publishes the events as usual.",
    )
    parser.add_argument("tables", nargs="*", metavar="TABLE", help=f"{', '.join(TABLES)} (default: all)")
    parser.add_argument("--since", type=_time, help="only rows updated at or after this ISO time")
    parser.add_argument("--batch", type=int, default=1000, help="rows per chunk, one transaction each (1000)")
    parser.add_argument("--max-rate", type=float, default=5000, help="rows per second at most (5000)")
    parser.add_argument("--restart", action="store_true", help="start again from the first row, even when done")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    printer = _Printer()
    Backfill(settings.endpoints.database_url, args.batch, args.max_rate, printer.show).run(
        args.tables, args.since, args.restart
    )
    return 0


class _Printer:
    """Prints a table's progress at most once a second, and always its last line."""

    def __init__(self) -> None:
        self.printed_at = 0.0

    def show(self, progress: Progress) -> None:
        if progress.already_done_at is not None:
            print(
                f"{progress.table}: done at {progress.already_done_at:%Y-%m-%d %H:%M:%S%z} "
                f"({progress.rows_done:,} rows, {progress.events:,} events); --restart to run it again",
                flush=True,
            )
            return
        now = time.monotonic()
        if not progress.finished and now - self.printed_at < PRINT_EVERY_S:
            return
        self.printed_at = now
        share = progress.rows_done / progress.rows_total if progress.rows_total else 1.0
        eta = progress.eta_s
        print(
            f"{progress.table:<12}{progress.rows_done:>12,} / {progress.rows_total:,} rows {share:6.1%}  "
            f"{progress.rate:>8,.0f} rows/s  "
            + ("done" if progress.finished else f"ETA {eta:,.0f} s" if eta is not None else "ETA -")
            + f"  ({progress.events:,} events)",
            flush=True,
        )
