"""Relay benchmark (prints figures; not a test). Run from the repo root with the stack up:

    .venv/bin/python -m bench.bench_relay [--orders 200000] [--rate 5000] [--seconds 30]

1. Drain: a backlog of `orders` x 5 real outbox events (written by the triggers), drained by one relay
   process; events/s from the first deleted row to an empty outbox, and the relay's peak RSS (VmHWM).
2. Latency: a writer commits orders at a steady `rate` events/s while the relay runs; for each event,
   the broker's LogAppendTime minus the writer's commit time; p50/p99/max.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

import psycopg
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.config import load_settings
from tests.support.database import scratch_database
from tests.support.kafka_reader import read_topic
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.workload import EVENTS_PER_ORDER, full_lifecycle, place_orders


def stop_relay(relay: RelayProcess) -> int:
    """Peak RSS in MB, then SIGTERM."""
    status = Path(f"/proc/{relay.process.pid}/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    relay.terminate()
    return peak_kb // 1024


def oldest_position(conn: psycopg.Connection) -> int | None:
    """Cheap (one index probe), unlike count(*), so polling it does not slow the relay it measures."""
    return conn.execute("SELECT min(position) FROM order_service.outbox").fetchone()[0]


def drain(services: Services, orders: int, batch_size: int) -> None:
    with scratch_database(services.database_url, "bench_relay", migrated=True) as db:
        print(f"drain: writing {orders * EVENTS_PER_ORDER:,} outbox events through the triggers ...", flush=True)
        full_lifecycle(db, orders)
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE order_service.outbox")
            (total,) = conn.execute("SELECT count(*) FROM order_service.outbox").fetchone()
            first = oldest_position(conn)
            relay = RelayProcess(services, db, f"bench{uuid.uuid4().hex[:6]}.", relay_batch_size=str(batch_size))
            while oldest_position(conn) == first:
                time.sleep(0.01)
            started = time.perf_counter()
            while oldest_position(conn) is not None:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
        peak_mb = stop_relay(relay)
        print(
            f"drain: {total:,} events in {elapsed:.1f} s = {total / elapsed:,.0f} events/s "
            f"(batch {batch_size}); relay peak RSS {peak_mb} MB"
        )


def latency(services: Services, rate: int, seconds: int, batch_size: int) -> None:
    with scratch_database(services.database_url, "bench_relay", migrated=True) as db:
        _latency(services, db, rate, seconds, batch_size)


def _latency(services: Services, db: str, rate: int, seconds: int, batch_size: int) -> None:
    bootstrap = services.kafka_bootstrap
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    topic = f"{prefix}nibble.orders"
    settings = load_settings()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"message.timestamp.type": "LogAppendTime"}  # the broker stamps the append time
    new = NewTopic(topic, num_partitions=settings.endpoints.kafka_topic_partitions, replication_factor=1, config=config)
    admin.create_topics([new])[topic].result(30)
    relay = RelayProcess(services, db, prefix, relay_batch_size=str(batch_size))
    try:
        time.sleep(3)  # let the relay connect and take its leases
        tick_s = 0.1  # one commit of rate/10 orders: a single writer keeps 5,000 events/s this way
        per_tick = max(1, round(rate * tick_s))
        committed_ms: dict[str, float] = {}
        print(
            f"latency: {rate} events/s ({per_tick} orders every {tick_s * 1000:.0f} ms) for {seconds} s ...",
            flush=True,
        )
        with psycopg.connect(db) as conn:
            start = time.perf_counter()
            ticks = int(seconds / tick_s)
            for tick in range(ticks):
                ids = place_orders(conn, per_tick)
                conn.commit()
                now_ms = time.time() * 1000
                committed_ms.update((str(i), now_ms) for i in ids)
                pause = start + (tick + 1) * tick_s - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            achieved = len(committed_ms) / (time.perf_counter() - start)
        received = read_topic(bootstrap, topic, "order", len(committed_ms), timeout_s=120)
        lags = sorted(m.timestamp_ms - committed_ms[m.key] for m in received)
        q = statistics.quantiles(lags, n=100)
        print(
            f"latency: {len(lags):,} events at {achieved:,.0f} events/s: commit -> Kafka append "
            f"p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, max {lags[-1]:.0f} ms"
        )
        print(f"latency: relay peak RSS {stop_relay(relay)} MB")
    finally:
        if relay.running:
            relay.kill()
        admin.delete_topics([topic])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000, help="drain backlog = orders x 5 events (0: skip)")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=5000, help="events/s for the latency run")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    services = Services.from_settings(load_settings())
    if args.orders:
        drain(services, args.orders, args.batch_size)
    latency(services, args.rate, args.seconds, args.batch_size)


if __name__ == "__main__":
    main()
