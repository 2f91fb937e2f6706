"""Relay benchmark (prints figures; not a test). Run from the repo root with the stack up, once, on a machine
as quiet as you can get (say in the figures if it was shared):

    .venv/bin/python -m bench.bench_relay [--orders 200000] [--processes 1,2,4] [--rates 5000,10000]
                                          [--seconds 30] [--rounds 3] [--debezium-rounds 1] [--skip-debezium]

1. Drain: a backlog of `orders` x 6 real outbox rows (5 order events and 1 order ledger entry each, written
   once by the triggers, then copied as a template database for each run), drained by `nibble relay
   --processes N` for each N into topics of its own that the broker stamps (LogAppendTime); events/s from
   the first append to the last (broker time: the span Debezium's peer reports), the relay processes' CPU
   per event and their PostgreSQL backends' CPU per event (/proc, same span) and the share of the machine
   busy from its first deleted row to an empty outbox, their largest peak RSS (VmHWM). `rounds` drains per
   N, the Ns in alternation, reported as medians (the largest RSS). Its own check: every row appended
   exactly once.
2. Latency: a writer commits orders at a steady rate while the relay runs (one commit every 100 ms); per
   OrderPlaced, the broker's LogAppendTime minus the writer's commit time; p50/p99/max (bench/stats.py;
   each order's ledger entry travels beside it, on the order ledger's topic: the relay carries twice the
   rate). The rate achieved is printed beside the one asked; its own check: every order's event read back
   (the ones missing when the reader gives up are counted).
3. Debezium side by side: `../shared/peers/debezium/run.sh <events>` (Kafka Connect + the Outbox Event Router
   on the same outbox shape and size, which the harness writes itself, same stack and machine) and its
   first-to-last append rate; `debezium-rounds` runs, each after a round of relay drains, reported as
   their median, and the ratio of each relay median to it.
4. The wire format's cost (issue 21: the framing must not cost the hot path): the relay's encode step over
   the drained backlog's own rows, in process, framed (magic byte + registry id) and unframed (plain Avro,
   as before the registry) in alternation; the difference per event, and its share of the relay's CPU per
   event in the drains.

Everything ends in one table; the exit status is 1 when a check of 1. or 2. failed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from bench import stats
from pipeline.config import load_settings
from pipeline.contract.codec import Codec
from pipeline.outbox.batch import encode_batch
from pipeline.outbox.relay import APPLICATION_NAME
from pipeline.outbox.store import OutboxStore
from pipeline.outbox.supervisor import default_processes
from tests.support.database import scratch_database, url_for
from tests.support.kafka_reader import read_topic
from tests.support.relay import RelayProcess, delete_subjects
from tests.support.services import Services
from tests.support.workload import ROWS_PER_ORDER, full_lifecycle, place_orders

ROOT = Path(__file__).resolve().parent.parent
DEBEZIUM = ROOT.parent / "shared" / "peers" / "debezium" / "run.sh"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The shared broker has been seen not to answer for 10-20 s under other runs' load: a long run is not lost
# to one slow answer.
BROKER_TIMEOUT_S = 60


@dataclass(frozen=True)
class Drain:
    processes: int
    events: int  # rows in the outbox
    appended: int  # messages the broker appended (every row once when the drain is exact)
    append_s: float  # first append -> last append, broker time
    cpu_us_per_event: float
    postgres_us_per_event: float  # the relays' PostgreSQL backends (autovacuum and checkpoints not counted)
    peak_rss_mb: int
    machine_busy: float  # share of all cores busy (any process) from the first deleted row to an empty outbox

    @property
    def rate(self) -> float:
        return self.appended / self.append_s

    @property
    def exact(self) -> bool:
        return self.appended == self.events


@dataclass(frozen=True)
class FramingCost:
    events: int
    pairs: list[tuple[float, float]]  # encode step CPU per event of one batch: (framed, unframed)

    @property
    def framed_us(self) -> float:
        return statistics.median(framed for framed, _ in self.pairs)

    @property
    def unframed_us(self) -> float:
        return statistics.median(unframed for _, unframed in self.pairs)

    @property
    def cost_us(self) -> float:
        """The median of the paired differences: the machine's drifting load hits both sides of a pair alike."""
        return statistics.median(framed - unframed for framed, unframed in self.pairs)


@dataclass(frozen=True)
class Latency:
    asked: int
    achieved: float
    lags_ms: list[float]
    missed: int  # orders committed whose event the reader had not seen when it gave up
    peak_rss_mb: int


def create_append_time_topics(bootstrap: str, topics: list[str]) -> None:
    """The topics, created before the relay would: the broker stamps each message with its append time."""
    partitions = load_settings().endpoints.kafka_topic_partitions
    config = {"message.timestamp.type": "LogAppendTime"}
    new = [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config) for topic in topics]
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})  # kept until its futures are done
    for future in admin.create_topics(new).values():
        future.result(30)


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    for future in admin.delete_topics(topics).values():
        future.result(30)


def append_span(bootstrap: str, topics: list[str]) -> tuple[int, float]:
    """(messages in the topics, seconds from the first append to the last), from each partition's first and
    last message: LogAppendTime only grows along a partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}"})
    count, first_ms, last_ms = 0, float("inf"), 0.0
    try:
        for topic in topics:
            for partition in consumer.list_topics(topic, timeout=BROKER_TIMEOUT_S).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=BROKER_TIMEOUT_S)
                if high == low:
                    continue
                count += high - low
                for offset in (low, high - 1):
                    consumer.assign([TopicPartition(topic, partition, offset)])
                    message = consumer.poll(BROKER_TIMEOUT_S)
                    assert message is not None and not message.error(), f"{topic}[{partition}]@{offset} unread"
                    stamp = message.timestamp()[1]
                    first_ms, last_ms = min(first_ms, stamp), max(last_ms, stamp)
    finally:
        consumer.close()
    return count, max(0.001, (last_ms - first_ms) / 1000)


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


def relay_backends(conn: psycopg.Connection) -> list[int]:
    """The backend pids of the relays' sessions on the database `conn` is connected to (not the parallel
    workers their backlog counts start now and then, which come and go)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
        " AND backend_type = 'client backend'",
        (APPLICATION_NAME,),
    ).fetchall()
    return [pid for (pid,) in rows]


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
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    topics = Codec(prefix).topics
    create_append_time_topics(services.kafka_bootstrap, topics)
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("ANALYZE order_service.outbox")
            (total,) = conn.execute("SELECT count(*) FROM order_service.outbox").fetchone()
            first = oldest_position(conn)
            relay = RelayProcess(services, db, prefix, processes=processes, relay_batch_size=str(batch_size))
            while oldest_position(conn) == first:
                time.sleep(0.01)
            pids, backends = relay_pids(relay), relay_backends(conn)
            cpu_before, (busy_before, all_before) = cpu_seconds(pids), machine_busy_ticks()
            backends_before = cpu_seconds(backends)
            while oldest_position(conn) is not None:
                time.sleep(0.05)
            cpu, (busy, every) = cpu_seconds(pids) - cpu_before, machine_busy_ticks()
            backends_cpu = cpu_seconds(backends) - backends_before
        rss = peak_rss_mb(pids)
        relay.terminate()
        appended, append_s = append_span(services.kafka_bootstrap, topics)
        result = Drain(
            processes,
            total,
            appended,
            append_s,
            cpu / total * 1e6,
            backends_cpu / total * 1e6,
            rss,
            (busy - busy_before) / max(1, every - all_before),
        )
        print(
            f"drain: {processes} process(es): {appended:,} of {total:,} events appended, first -> last append "
            f"{append_s:.1f} s = {result.rate:,.0f} events/s, {result.cpu_us_per_event:.1f} us CPU/event "
            f"(PostgreSQL backends {result.postgres_us_per_event:.1f} us), peak RSS {result.peak_rss_mb} MB, "
            f"machine {result.machine_busy:.0%} busy"
            + ("" if result.exact else " NOT EXACT: every row must be appended once"),
            flush=True,
        )
        return result
    finally:
        with psycopg.connect(services.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        delete_topics(services.kafka_bootstrap, topics)
        delete_subjects(prefix)


def latency(services: Services, rate: int, seconds: int, processes: int, batch_size: int) -> Latency:
    with scratch_database(services.database_url, "bench_relay", migrated=True) as db:
        bootstrap = services.kafka_bootstrap
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        topic = f"{prefix}nibble.orders"
        create_append_time_topics(bootstrap, [topic])
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
            appended = {m.key: m.timestamp_ms for m in received if m.key in committed_ms}
            result = Latency(
                rate,
                achieved,
                [stamp - committed_ms[key] for key, stamp in appended.items()],
                len(committed_ms) - len(appended),
                peak_rss_mb(relay_pids(relay)),
            )
            print(
                f"latency: {achieved:,.0f} of {rate:,} events/s asked, {processes} process(es): commit -> Kafka "
                f"append {stats.describe(result.lags_ms)}; missed {result.missed:,} of {len(committed_ms):,} "
                "(not read back within 180 s)",
                flush=True,
            )
            relay.terminate()
            return result
        finally:
            if relay.running:
                relay.kill()
            delete_topics(bootstrap, [topic])
            delete_subjects(prefix)


PEER_DATABASE = "peer_debezium"  # the harness's own database (its PEER_DB default)


def debezium(database_url: str, events: int, timeout_s: float) -> tuple[float | None, str]:
    """Debezium's first-to-last append rate for `events` outbox rows, and its summary lines; None after
    timeout_s (creating its replication slot waits for every transaction open on the server to end, and a
    session left idle in a transaction by another run on the shared server blocks it indefinitely)."""
    harness = subprocess.Popen(
        ["bash", str(DEBEZIUM), str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a timeout stops its JVMs too
    )
    try:
        stdout, stderr = harness.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # Ending its sessions makes the harness fail, and its exit trap drop the slot and the database (a slot
        # still being created by a live session cannot be dropped: stopping the harness alone leaves it behind).
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (PEER_DATABASE,))
        try:
            stdout, stderr = harness.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(harness.pid, signal.SIGTERM)  # its exit trap stops Connect and drops its database
            stdout, stderr = harness.communicate(timeout=120)
        stderr += f"\nstopped after {timeout_s:.0f} s"
    keep = ("machine:", "drain: first", "drain: connector JVM", "drain: Connect JVM CPU", "drain: per-key", "load:")
    summary = "\n".join(line for line in stdout.splitlines() if line.startswith(keep))
    match = re.search(r"first append -> last append .*= ([\d,]+) events/s", stdout)
    if match is None:
        return None, summary + stdout[-1000:] + stderr[-1000:]
    return float(match.group(1).replace(",", "")), summary


FRAMING_SAMPLE = 60_000  # backlog rows the encode step is timed on


def framing_cost(template: str, rounds: int, batch_size: int) -> FramingCost:
    """The relay's encode step (batch.encode_batch with the codec) over the backlog's first rows, in this
    process, one relay batch at a time, framed and unframed back to back (which goes first alternates);
    claimed as the relay claims them (claim_plan.sql included)."""
    with psycopg.connect(template) as conn:
        rows = OutboxStore("order_service").claim_batch(conn, FRAMING_SAMPLE, 1, [0])  # one lane: every row
    framed = Codec(schema_id=lambda _stream, _version: 1)  # looked up once per version, as by the relay
    unframed = Codec()
    batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    result = FramingCost(len(rows), [])
    for _ in range(rounds):
        for batch in batches:
            pair = {}
            order = (framed, unframed) if len(result.pairs) % 2 == 0 else (unframed, framed)
            for codec in order:
                started = time.process_time()
                encode_batch(batch, codec.encode, sys.maxsize)
                pair[codec] = (time.process_time() - started) / len(batch) * 1e6
            result.pairs.append((pair[framed], pair[unframed]))
    print(
        f"framing: encode step over {len(rows):,} events x {rounds}, {len(result.pairs)} batch pairs: framed "
        f"{result.framed_us:.2f} us/event, unframed {result.unframed_us:.2f} us/event, framed - unframed "
        f"{result.cost_us:+.2f} us/event (median of the pairs)",
        flush=True,
    )
    return result


def print_table(table: list[tuple[str, ...]]) -> None:
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


def rates(values: list[float]) -> str:
    return " / ".join(f"{value:,.0f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000, help="drain backlog = orders x 6 outbox rows")
    parser.add_argument("--processes", default="1,2,4", help="relay process counts to drain with")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rates", default="5000,10000", help="events/s of the latency runs ('' for none)")
    parser.add_argument("--seconds", type=int, default=30, help="length of each latency run")
    parser.add_argument("--rounds", type=int, default=3, help="drains per process count, in alternation (medians)")
    parser.add_argument("--debezium-rounds", type=int, default=1, help="Debezium runs, each after a round of drains")
    parser.add_argument("--debezium-timeout", type=float, default=900, help="seconds a Debezium run may take")
    parser.add_argument("--skip-debezium", action="store_true", help="do not run ../shared/peers/debezium/run.sh")
    args = parser.parse_args()
    services = Services.from_settings(load_settings())
    events = args.orders * ROWS_PER_ORDER  # every row the relay publishes, the ledger entries included
    debezium_rounds = 0 if args.skip_debezium else min(args.rounds, args.debezium_rounds)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", flush=True)

    drains: list[Drain] = []
    dbz_rates: list[float] = []
    with scratch_database(services.database_url, "bench_relay_template", migrated=True) as template:
        print(f"drain: writing {events:,} outbox events through the triggers (once) ...", flush=True)
        full_lifecycle(template, args.orders)
        with psycopg.connect(template, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE order_service.outbox")
        framing = framing_cost(template, max(5, args.rounds), args.batch_size)
        # Rounds alternate the process counts and Debezium, so the shared machine's drifting load hits each alike.
        for round_number in range(args.rounds):
            for processes in (int(p) for p in args.processes.split(",")):
                drains.append(drain(services, template.rsplit("/", 1)[1], processes, args.batch_size))
            if round_number < debezium_rounds:
                dbz_rate, dbz_summary = debezium(services.database_url, events, args.debezium_timeout)
                print(f"debezium, round {round_number + 1}:\n{dbz_summary}", flush=True)
                if dbz_rate:
                    dbz_rates.append(dbz_rate)

    latency_processes = default_processes()
    latencies = [
        latency(services, rate, args.seconds, latency_processes, args.batch_size)
        for rate in (int(r) for r in args.rates.split(",") if r)
    ]

    print(
        f"\nRelay benchmark: {events:,}-event backlog, batch {args.batch_size}; {os.cpu_count()} cores shared with "
        f"the whole stack (load average {os.getloadavg()[0]:.1f} at the end)"
    )
    table = [
        ("measure", "events/s", "p50 ms", "p99 ms", "CPU us/event", "PG backends us/event", "peak RSS/process", "busy")
    ]
    medians: dict[int, float] = {}
    cpu_medians: dict[int, float] = {}
    for processes in dict.fromkeys(d.processes for d in drains):
        runs = [d for d in drains if d.processes == processes]
        medians[processes] = statistics.median(d.rate for d in runs)
        cpu_medians[processes] = statistics.median(d.cpu_us_per_event for d in runs)
        table.append(
            (
                f"drain, {processes} relay process(es), median of {len(runs)} ({rates([d.rate for d in runs])})",
                f"{medians[processes]:,.0f}",
                "",
                "",
                f"{cpu_medians[processes]:.1f}",
                f"{statistics.median(d.postgres_us_per_event for d in runs):.1f}",
                f"{max(d.peak_rss_mb for d in runs)} MB",
                f"{statistics.median(d.machine_busy for d in runs):.0%}",
            )
        )
    dbz_median = statistics.median(dbz_rates) if dbz_rates else None
    table.append(
        (
            f"drain, Debezium 3.7, median of {len(dbz_rates)} of {debezium_rounds} ({rates(dbz_rates)})",
            f"{dbz_median:,.0f}" if dbz_median else "n/a",
            *[""] * 6,
        )
    )
    if dbz_median:
        for processes, median in medians.items():
            table.append(
                (f"relay {processes} process(es) / Debezium, medians", f"{median / dbz_median:.2f}x", *[""] * 6)
            )
    for label, per_event in (
        ("framed (wire format)", framing.framed_us),
        ("unframed (plain Avro)", framing.unframed_us),
    ):
        table.append(
            (
                f"encode step, {label}, median of {len(framing.pairs)} batches",
                f"{1e6 / per_event:,.0f}",
                "",
                "",
                f"{per_event:.2f}",
                *[""] * 3,
            )
        )
    for processes, cpu in cpu_medians.items():
        table.append(
            (
                f"framing's cost (median framed - unframed) / relay CPU per event ({processes} process(es))",
                "",
                "",
                "",
                f"{framing.cost_us:+.2f} = {framing.cost_us / cpu:+.1%}",
                *[""] * 3,
            )
        )
    for run in latencies:
        worst = max(run.lags_ms, default=0)
        label = f"latency, {run.asked:,}/s asked, {latency_processes} process(es) (max {worst:.0f} ms)"
        table.append(
            (
                label,
                f"{run.achieved:,.0f}",
                stats.cell(run.lags_ms, 50),
                stats.cell(run.lags_ms, 99),
                "",
                "",
                f"{run.peak_rss_mb} MB",
                "",
            )
        )
    print_table(table)
    failed = [
        f"drain with {d.processes} process(es): {d.appended:,} of {d.events:,} appended" for d in drains if not d.exact
    ]
    failed += [f"latency at {run.asked:,}/s: {run.missed:,} events missed" for run in latencies if run.missed]
    print("checks: " + ("; ".join(failed) if failed else "every drained row appended once, every latency sample read"))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
