"""Backfill benchmark (prints figures; not a test). Run from the repo root with the stack up:

    .venv/bin/python -m bench.bench_backfill [--orders 100000] [--writer-rate 200] [--seconds 15]

On a scratch database holding `orders` orders whose events were never published (outboxes emptied, the
orders listed as never counted by the order ledger, as migration 0015 lists them: each snapshot comes with
its ledger entry):
1. a writer changes random orders, one short transaction each, at `writer-rate`/s for `seconds`: its
   commit latency alone (p50/p99/max);
2. `nibble backfill orders` at the default --batch and --max-rate while the same writer runs: the
   backfill's rows/s and the writer's latency meanwhile;
3. the backfill again unthrottled (--restart, no writer): the most this machine does.
No relay runs: the figures are the backfill's own cost to PostgreSQL. Each rate is one run's rows over that
run's time, printed beside the rate asked for; each backfill run must snapshot every order once (its own
check: the exit status is 1 when it does not).
"""

from __future__ import annotations

import argparse
import sys
import time

import psycopg

from bench.stats import describe
from pipeline.config import load_settings
from pipeline.contract import catalog
from pipeline.outbox.backfill import Backfill
from tests.support.database import scratch_database
from tests.support.workload import full_lifecycle
from tests.support.writer import Writer

OUTBOXES = tuple(catalog.outboxes(catalog.load()))
# Every visible order as never counted by the order ledger (as 0015 lists them): its snapshot writes its entry.
LIST_OUTSIDE_LEDGER = (
    "INSERT INTO order_service.orders_outside_ledger SELECT id FROM order_service.orders "
    "o WHERE order_service.is_visible(o) ON CONFLICT DO NOTHING"
)


def snapshot_count(db: str) -> tuple[int, int]:
    """(OrderSnapshot events in the outbox, distinct orders they snapshot)."""
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT aggregate_id) FROM order_service.outbox WHERE event_type = 'OrderSnapshot'"
        ).fetchone()


def timed_backfill(db: str, backfill: Backfill, restart: bool = False) -> tuple[int, float, tuple[int, int]]:
    """One run on an emptied order outbox: (rows it snapshotted, its seconds, its snapshot count)."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM order_service.outbox")
        conn.execute(LIST_OUTSIDE_LEDGER)  # each run the same work: a ledger entry per snapshot
    started = time.monotonic()
    [progress] = backfill.run(["orders"], restart=restart)
    return progress.rows_done, time.monotonic() - started, snapshot_count(db)


def writer_line(label: str, latencies: list[float], seconds: float, asked: float) -> str:
    rate = len(latencies) / seconds
    return f"{label:<36} {rate:6,.0f}/s of {asked:,.0f}/s asked; commit {describe(latencies, digits=2)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--writer-rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    settings = load_settings()
    with scratch_database(settings.endpoints.database_url, "bench_backfill", migrated=True) as db:
        print(f"[setup] {args.orders:,} orders through their lifecycle, then the outboxes emptied", flush=True)
        orders = full_lifecycle(db, args.orders)
        with psycopg.connect(db, autocommit=True) as conn:
            for schema in OUTBOXES:
                conn.execute(f"DELETE FROM {schema}.outbox")
            conn.execute("VACUUM ANALYZE order_service.orders")

        writer = Writer(db, orders, rate=args.writer_rate)
        started = time.monotonic()
        writer.start()
        time.sleep(args.seconds)
        alone = writer.stop()
        alone_s = time.monotonic() - started

        defaults = Backfill(db)
        writer = Writer(db, orders, rate=args.writer_rate, seed=8)
        started = time.monotonic()
        writer.start()
        throttled_rows, throttled_s, throttled_snapshots = timed_backfill(db, defaults)
        during = writer.stop()
        during_s = time.monotonic() - started

        unthrottled_rows, unthrottled_s, unthrottled_snapshots = timed_backfill(
            db, Backfill(db, max_rate=1e9), restart=True
        )

    print(f"\nbackfill of {args.orders:,} orders, batch {defaults.batch} (each rate: that run's rows / its time):")
    print(
        f"  with the writer, default --max-rate   {throttled_rows / throttled_s:>10,.0f} rows/s "
        f"of {defaults.max_rate:,.0f}/s asked ({throttled_rows:,} rows in {throttled_s:.1f} s)"
    )
    print(
        f"  alone, unthrottled                    {unthrottled_rows / unthrottled_s:>10,.0f} rows/s "
        f"({unthrottled_rows:,} rows in {unthrottled_s:.1f} s)"
    )
    print("writer, one order per transaction:")
    print("  " + writer_line("without a backfill", alone, alone_s, args.writer_rate))
    print("  " + writer_line("during the backfill (default rate)", during, during_s, args.writer_rate))
    failed = [
        f"{label}: {count:,} snapshots of {distinct:,} orders, {args.orders:,} expected"
        for label, (count, distinct) in (("throttled", throttled_snapshots), ("unthrottled", unthrottled_snapshots))
        if not count == distinct == args.orders
    ]
    print("exactness: " + ("; ".join(failed) if failed else "every run snapshotted every order once"))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
