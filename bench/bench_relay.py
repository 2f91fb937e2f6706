"""Relay benchmark (prints figures; not a test). Run from the repo root with the stack up, once, on a machine
as quiet as you can get (say in the figures if it was shared):

    .venv/bin/python -m bench.bench_relay [--orders 200000] [--processes 1,2,4] [--rates 5000,10000]
                                          [--seconds 30] [--skip-debezium]

1. Drain: a backlog of `orders` x 6 real outbox rows (5 order events and 1 order ledger entry each, written
   once by the triggers, then copied as a template database for each run), drained by `nibble relay
   --processes N` for each N; events/s (rows) from the first deleted row to an empty outbox, the relay
   processes' CPU per event over the drain, their largest peak RSS (VmHWM), and how busy the whole machine
   was meanwhile.
2. Latency: a writer commits orders at a steady rate while the relay runs (one commit every 100 ms); per
   OrderPlaced, the broker's LogAppendTime minus the writer's commit time; p50/p99/max (each order's ledger
   entry travels beside it, on the order ledger's topic: the relay carries twice the rate).
3. Debezium side by side: `../shared/peers/debezium/run.sh <events>` (Kafka Connect + the Outbox Event Router
   on the same outbox shape, stack and machine) and its first-to-last append rate.

Everything ends in one table.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from pipeline.config import load_settings
from pipeline.outbox.supervisor import default_processes
from tests.support.database import scratch_database, url_for
from tests.support.kafka_reader import read_topic
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.workload import ROWS_PER_ORDER, full_lifecycle, place_orders

ROOT = Path(__file__).resolve().parent.parent
DEBEZIUM = ROOT.parent / "shared" / "peers" / "debezium" / "run.sh"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Drain:
    processes: int
    events: int
    seconds: float
    cpu_us_per_event: float
    peak_rss_mb: int
    machine_busy: float  # share of all cores busy (any process) during the drain

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def relay_pids(relay: RelayProcess) -> list[int]:
    """The processes that publish: the supervisor's children, or the relay itself when it runs alone."""
    pid = relay.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children] or [pid]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def peak_rss_mb(pids: list[int]) -> int:
    peaks = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        peaks.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))))
    return max(peaks) // 1024


def machine_busy_ticks() -> tuple[int, int]:
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def oldest_position(conn: psycopg.Connection) -> int | None:
    """Cheap (one index probe), unlike count(*), so polling it does not slow the relay it measures."""
    return conn.execute("SELECT min(position) FROM order_service.outbox").fetchone()[0]


def drain(services: Services, template: str, processes: int, batch_size: int) -> Drain:
    name = f"bench_relay_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    db = url_for(services.database_url, name)
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("ANALYZE order_service.outbox")
            (total,) = conn.execute("SELECT count(*) FROM order_service.outbox").fetchone()
            first = oldest_position(conn)
            relay = RelayProcess(
                services, db, f"bench{uuid.uuid4().hex[:6]}.", processes=processes, relay_batch_size=str(batch_size)
            )
            while oldest_position(conn) == first:
                time.sleep(0.01)
            started, pids = time.perf_counter(), relay_pids(relay)
            cpu_before, (busy_before, all_before) = cpu_seconds(pids), machine_busy_ticks()
            while oldest_position(conn) is not None:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu, (busy, every) = cpu_seconds(pids) - cpu_before, machine_busy_ticks()
        result = Drain(
            processes,
            total,
            elapsed,
            cpu / total * 1e6,
            peak_rss_mb(pids),
            (busy - busy_before) / max(1, every - all_before),
        )
        relay.terminate()
        print(
            f"drain: {processes} process(es): {total:,} events in {elapsed:.1f} s = {result.rate:,.0f} events/s, "
            f"{result.cpu_us_per_event:.1f} us CPU/event, peak RSS {result.peak_rss_mb} MB, "
            f"machine {result.machine_busy:.0%} busy",
            flush=True,
        )
        return result
    finally:
        with psycopg.connect(services.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def latency(services: Services, rate: int, seconds: int, processes: int, batch_size: int) -> tuple[float, ...]:
    """(achieved events/s, p50, p99, max in ms, peak RSS MB)."""
    with scratch_database(services.database_url, "bench_relay", migrated=True) as db:
        bootstrap = services.kafka_bootstrap
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        topic = f"{prefix}nibble.orders"
        partitions = load_settings().endpoints.kafka_topic_partitions
        admin = AdminClient({"bootstrap.servers": bootstrap})
        config = {"message.timestamp.type": "LogAppendTime"}  # the broker stamps the append time
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)])[
            topic
        ].result(30)
        relay = RelayProcess(services, db, prefix, processes=processes, relay_batch_size=str(batch_size))
        try:
            time.sleep(4)  # let the relays connect and share the lanes
            tick_s = 0.1
            per_tick = max(1, round(rate * tick_s))
            committed_ms: dict[str, float] = {}
            with psycopg.connect(db) as conn:
                start = time.perf_counter()
                for tick in range(int(seconds / tick_s)):
                    ids = place_orders(conn, per_tick)
                    conn.commit()
                    now_ms = time.time() * 1000
                    committed_ms.update((str(i), now_ms) for i in ids)
                    pause = start + (tick + 1) * tick_s - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                achieved = len(committed_ms) / (time.perf_counter() - start)
            received = read_topic(bootstrap, topic, "order", len(committed_ms), timeout_s=180)
            lags = sorted(m.timestamp_ms - committed_ms[m.key] for m in received)
            q = statistics.quantiles(lags, n=100)
            rss = peak_rss_mb(relay_pids(relay))
            print(
                f"latency: {len(lags):,} events at {achieved:,.0f} events/s, {processes} process(es): commit -> "
                f"Kafka append p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, max {lags[-1]:.0f} ms",
                flush=True,
            )
            relay.terminate()
            return achieved, q[49], q[98], lags[-1], rss
        finally:
            if relay.running:
                relay.kill()
            admin.delete_topics([topic])


def debezium(events: int) -> tuple[float | None, str]:
    """Debezium's first-to-last append rate for `events` outbox rows, and its summary lines."""
    result = subprocess.run(["bash", str(DEBEZIUM), str(events)], capture_output=True, text=True, check=False)
    keep = ("machine:", "drain: first", "drain: connector JVM", "drain: Connect JVM CPU", "drain: per-key", "load:")
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith(keep))
    match = re.search(r"first append -> last append .*= ([\d,]+) events/s", result.stdout)
    if match is None:
        return None, summary + result.stdout[-1000:] + result.stderr[-1000:]
    return float(match.group(1).replace(",", "")), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000, help="drain backlog = orders x 6 outbox rows")
    parser.add_argument("--processes", default="1,2,4", help="relay process counts to drain with")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rates", default="5000,10000", help="events/s of the latency runs")
    parser.add_argument("--seconds", type=int, default=30, help="length of each latency run")
    parser.add_argument("--skip-debezium", action="store_true", help="do not run ../shared/peers/debezium/run.sh")
    args = parser.parse_args()
    services = Services.from_settings(load_settings())
    events = args.orders * ROWS_PER_ORDER  # every row the relay publishes, the ledger entries included
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", flush=True)

    drains: list[Drain] = []
    with scratch_database(services.database_url, "bench_relay_template", migrated=True) as template:
        print(f"drain: writing {events:,} outbox events through the triggers (once) ...", flush=True)
        full_lifecycle(template, args.orders)
        with psycopg.connect(template, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE order_service.outbox")
        for processes in (int(p) for p in args.processes.split(",")):
            drains.append(drain(services, template.rsplit("/", 1)[1], processes, args.batch_size))

    latency_processes = default_processes()
    latencies = [
        (rate, latency(services, rate, args.seconds, latency_processes, args.batch_size))
        for rate in (int(r) for r in args.rates.split(","))
    ]
    dbz_rate, dbz_summary = (None, "skipped") if args.skip_debezium else debezium(events)
    if not args.skip_debezium:
        print(f"debezium:\n{dbz_summary}", flush=True)

    print(
        f"\nRelay benchmark: {events:,}-event backlog, batch {args.batch_size}; {os.cpu_count()} cores shared with "
        f"the whole stack (load average {os.getloadavg()[0]:.1f} at the end)"
    )
    table = [("measure", "events/s", "p50 ms", "p99 ms", "CPU us/event", "peak RSS/process", "machine busy")]
    for d in drains:
        table.append(
            (
                f"drain, {d.processes} relay process(es)",
                f"{d.rate:,.0f}",
                "",
                "",
                f"{d.cpu_us_per_event:.1f}",
                f"{d.peak_rss_mb} MB",
                f"{d.machine_busy:.0%}",
            )
        )
    table.append(("drain, Debezium 3.7 (first -> last append)", f"{dbz_rate:,.0f}" if dbz_rate else "n/a", *[""] * 5))
    if dbz_rate:
        best = max(d.rate for d in drains)
        table.append(("best relay drain / Debezium", f"{best / dbz_rate:.2f}x", *[""] * 5))
    for rate, (achieved, p50, p99, worst, rss) in latencies:
        label = f"latency at {rate:,}/s, {latency_processes} process(es) (max {worst:.0f} ms)"
        table.append((label, f"{achieved:,.0f}", f"{p50:.0f}", f"{p99:.0f}", "", f"{rss} MB", ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        print(
            "| "
            + " | ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
