"""`nibble verify` benchmark (prints figures; not a test). Run from the repo root with the stack up:

    .venv/bin/python -m bench.bench_verify [--orders 5000] [--drifting 20] [--runs 3]

On a scratch database: `orders` orders through their lifecycle (cities of their own, placed over the last
12 hours), published by a relay and ingested by the stack's Pinot tables, then, each `runs` times (medians
shown):
1. a full verification of every stream, scoped to the benchmark's cities (the Pinot tables are shared);
2. the recent window only (`--since -1h`), what `--watch` does each round;
   and a verification of a city with no rows: the fixed cost (Kafka offsets, Pinot's consumed offsets,
   one query per stream);
3. a full verification with `drifting` stale orders (their last event's outbox row deleted), which bisects
   the differing hours into minutes and reads those rows.
Verify's load: on PostgreSQL the rows its scans read (pg_stat_database: tuples returned + fetched, nothing
else writes the scratch database meanwhile), on Pinot the queries, the rows its servers scanned and the
broker's time (each query's answer). The extrapolation to 10 M events adds to the fixed cost the rest of
the full verification's time scaled by events: its scans are linear in rows (an estimate, not a
measurement).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from pipeline.analytics.verify import Scope, Verifier
from pipeline.devstack.generator import CITIES, Generator
from tests.support.database import scratch_database
from tests.support.exactness import backlog
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import start_services

SEQUENCES = (
    "order_service.outbox_position_seq",
    "driver_service.outbox_position_seq",
    "restaurant_service.outbox_position_seq",
)
TUPLES = "SELECT tup_returned + tup_fetched FROM pg_stat_database WHERE datname = current_database()"


@dataclass
class Figures:
    seconds: float
    postgres_tuples: float
    pinot_queries: float
    pinot_docs: float
    pinot_ms: float
    drifting: int  # aggregates found drifting (last run)
    buckets: int  # buckets compared (last run)


def timed(verifier: Verifier, scope: Scope, db: str, runs: int) -> Figures:
    """Medians of `runs` verifications of `scope`."""
    samples: list[tuple[float, int, int, int, int]] = []
    for _ in range(runs):
        with psycopg.connect(db, autocommit=True) as conn:
            before = conn.execute(TUPLES).fetchone()[0]
            started = time.monotonic()
            report = verifier.verify(scope)
            seconds = time.monotonic() - started
            time.sleep(0.6)  # the statistics collector reports after a moment
            load = report.pinot_load
            tuples = conn.execute(TUPLES).fetchone()[0] - before
            samples.append((seconds, tuples, load.queries, load.docs_scanned, load.broker_ms))
    medians = [statistics.median(column) for column in zip(*samples, strict=True)]
    return Figures(*medians, len(report.drifts), sum(result.buckets for result in report.results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--drifting", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with start_services() as services, scratch_database(services.database_url, "bench_verify", migrated=True) as db:
        suffix = f"-{uuid.uuid4().hex[:6]}"
        cities = tuple(city + suffix for city in CITIES)
        started = time.monotonic()
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)
        Generator(db, seed=5, city_suffix=suffix).run_batch(args.orders, start, per_minute=max(1, args.orders // 600))
        relay = RelayProcess(services, db)
        settings = services.settings()
        settings = settings.model_copy(update={"endpoints": settings.endpoints.model_copy(update={"database_url": db})})
        verifier = Verifier(settings)
        full = Scope(cities=cities, until=datetime.now(UTC) + timedelta(minutes=1))
        try:
            wait_until(lambda: backlog(db) == 0, 600, what="the relay to drain")
            wait_until(lambda: verifier.verify(full).equal, 600, what="Pinot to equal PostgreSQL")
            with psycopg.connect(db, autocommit=True) as conn:
                events = sum(conn.execute(f"SELECT last_value FROM {seq}").fetchone()[0] for seq in SEQUENCES)
            print(
                f"[setup] {args.orders:,} orders, {events:,} events (outbox positions drawn), published and "
                f"ingested in {time.monotonic() - started:.0f} s",
                flush=True,
            )

            rows = [("full, equal", timed(verifier, full, db, args.runs))]
            recent = Scope(since=datetime.now(UTC) - timedelta(hours=1), cities=cities)
            rows.append(("recent hour, equal", timed(verifier, recent, db, args.runs)))
            nothing = Scope(cities=(f"none-{uuid.uuid4().hex[:6]}",))
            rows.append(("no rows (fixed cost)", timed(verifier, nothing, db, args.runs)))

            relay.terminate()
            with psycopg.connect(db, autocommit=True) as conn:
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM order_service.orders WHERE status = 'delivered' ORDER BY id LIMIT %s",
                        (args.drifting,),
                    )
                ]
                conn.execute("UPDATE order_service.orders SET status = 'picked_up' WHERE id = ANY(%s)", (ids,))
                conn.execute("DELETE FROM order_service.outbox WHERE aggregate_id = ANY(%s)", (ids,))
            relay = RelayProcess(services, db)
            rows.append((f"full, {len(ids)} stale orders", timed(verifier, full, db, args.runs)))
        finally:
            relay.kill()

    print(f"\nnibble verify, {args.orders:,} orders / {events:,} events (median of {args.runs} runs):")
    print(
        f"{'':<26}{'seconds':>9}{'PG tuples':>12}{'Pinot queries':>15}{'Pinot rows scanned':>20}"
        f"{'broker s':>10}{'drift':>7}{'buckets':>9}"
    )
    for label, f in rows:
        print(
            f"{label:<26}{f.seconds:>9.2f}{f.postgres_tuples:>12,.0f}{f.pinot_queries:>15.0f}{f.pinot_docs:>20,.0f}"
            f"{f.pinot_ms / 1000:>10.2f}{f.drifting:>7}{f.buckets:>9}"
        )
    full, fixed = rows[0][1].seconds, rows[2][1].seconds
    print(
        f"\nextrapolated, not measured: a full verification of 10,000,000 events ~"
        f"{fixed + (full - fixed) * 10_000_000 / events:,.0f} s (the fixed cost plus the rest scaled by events)"
    )


if __name__ == "__main__":
    main()
