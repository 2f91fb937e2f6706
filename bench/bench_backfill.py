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
No relay runs: the figures are the backfill's own cost to PostgreSQL.
"""

from __future__ import annotations

import argparse
import time

import psycopg

from pipeline.config import load_settings
from pipeline.outbox.backfill import Backfill
from tests.support.database import scratch_database
from tests.support.workload import full_lifecycle
from tests.support.writer import Writer, percentile

OUTBOXES = ("order_service", "driver_service", "restaurant_service")
# Every visible order as never counted by the order ledger (as 0015 lists them): its snapshot writes its entry.
LIST_OUTSIDE_LEDGER = (
    "INSERT INTO order_service.orders_outside_ledger SELECT id FROM order_service.orders "
    "WHERE announced OR item_count > 0 ON CONFLICT DO NOTHING"
)


def latency_line(label: str, latencies: list[float]) -> str:
    return (
        f"{label:<34}{len(latencies):>8}  p50 {percentile(latencies, 50):6.2f} ms  "
        f"p99 {percentile(latencies, 99):7.2f} ms  max {max(latencies):7.2f} ms"
    )


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
            conn.execute(LIST_OUTSIDE_LEDGER)
            conn.execute("VACUUM ANALYZE order_service.orders")

        writer = Writer(db, orders, rate=args.writer_rate)
        writer.start()
        time.sleep(args.seconds)
        alone = writer.stop()

        defaults = Backfill(db)
        writer = Writer(db, orders, rate=args.writer_rate, seed=8)
        writer.start()
        started = time.monotonic()
        [progress] = defaults.run(["orders"])
        throttled_s = time.monotonic() - started
        during = writer.stop()

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(LIST_OUTSIDE_LEDGER)  # the same work as the first run: a ledger entry per snapshot
        started = time.monotonic()
        Backfill(db, max_rate=1e9).run(["orders"], restart=True)
        unthrottled_s = time.monotonic() - started

    rows = progress.rows_done
    print(f"\nbackfill of {rows:,} orders, batch {defaults.batch}, default --max-rate {defaults.max_rate:,.0f}:")
    print(f"  with the writer, default --max-rate   {rows / throttled_s:>10,.0f} rows/s")
    print(f"  alone, unthrottled                    {rows / unthrottled_s:>10,.0f} rows/s")
    print(f"writer, one order per transaction at {args.writer_rate:.0f}/s:")
    print("  " + latency_line("without a backfill", alone))
    print("  " + latency_line("during the backfill (default rate)", during))


if __name__ == "__main__":
    main()
