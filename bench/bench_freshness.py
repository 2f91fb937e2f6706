"""Commit -> queryable under segment commits (issue 19; prints figures, not a test). From the repo root, stack up:

    .venv/bin/python -m bench.bench_freshness --rate 1000 --seconds 1200 [--writers 3] [--relays 1]
    .venv/bin/python -m bench.bench_freshness --rate 5000 --seconds 600 --relays 2

Copies of every table that reads the order topics (`orders`, `order_events`, `order_ledger`: the checked-in
configs as `nibble pinot apply` sends them, renamed, on topics of the run's own) ingest what `--writers`
processes commit into a scratch database, published by a relay: `rate / 10` orders every 100 ms (one
OrderPlaced and one ledger entry each). The copies share the server with the stack's tables, so their segment
builds and commits are the ones the checked-in thresholds make, and a long run at these rates includes several.

A probe polls the `order_events` copy every 20 ms (rows per writer and per segment). A commit is queryable once
Pinot counts every order its writer had committed by then: commit -> queryable is that wait, the p50 / p99 /
p99.9 / max of every commit after the warm-up. A partition stalls while its count does not grow although the
writers write (0.11 consumes nothing of a partition while it builds and commits its segment); the longest
stall per partition is printed, with the segment commits seen (consuming segments' sequence numbers before
and after) and, from the Pinot server's log, each commit's build time and how long its partition waited for
the next consuming segment. The writers say when they did not hold the rate (the rate they held, and how late
their worst tick started).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import Process, Queue
from pathlib import Path

import pinotdb.exceptions
import psycopg
from confluent_kafka.admin import AdminClient

from bench.stats import percentile
from connectors.pinot import Controller, ControllerError, broker_connection
from pipeline.analytics.tables import TableSpec, desired_specs
from pipeline.config import Settings, load_settings
from pipeline.contract.codec import Codec
from pipeline.contract.topics import ensure_stream_topics
from pipeline.polling import poll
from tests.support.database import scratch_database
from tests.support.relay import RelayProcess, delete_subjects
from tests.support.services import Services, local_services
from tests.support.workload import place_orders

TICK_S = 0.1
PROBE_S = 0.02
COPIED = ("orders", "order_events", "order_ledger")  # every table reading nibble.orders or nibble.order_ledger
PROBED = "order_events"
DRAIN_S = 120
LOAD_EVERY_S = 10  # how long the probe waits after the writers stopped for the last commits to be queryable


@dataclass
class Run:
    """What the probe saw."""

    lags: list[float] = field(default_factory=list)  # commit -> queryable (s) of every commit after the warm-up
    unseen: int = 0  # commits not queryable DRAIN_S after the writers stopped
    stalls: dict[int, float] = field(default_factory=dict)  # partition -> longest time its count did not grow (s)
    held: float = 0.0  # events/s the writers committed after the warm-up
    latest_tick_s: float = 0.0  # how late the writers' latest tick started (s)
    loads: list[float] = field(default_factory=list)  # the 1-minute load average, every LOAD_EVERY_S
    backlog: int = 0  # outbox rows not yet published when the writers stopped
    unanswered: int = 0  # probe queries that failed (they count as not seen)


def copies(settings: Settings, run: str) -> tuple[Settings, list[TableSpec]]:
    """The settings of the run's own topics and tables, and its copies of COPIED as apply would send them."""
    prefixed = settings.model_copy(
        update={
            "endpoints": settings.endpoints.model_copy(update={"topic_prefix": f"{run}."}),
            "pinot": settings.pinot.model_copy(update={"table_prefix": f"{run}_"}),
        }
    )
    specs = [spec for spec in desired_specs(prefixed) if spec.name.removeprefix(f"{run}_") in COPIED]
    for spec in specs:
        spec.table.pop("task", None)  # no offline part: nothing for the minion to move
    return prefixed, specs


def create(settings: Settings, specs: list[TableSpec]) -> None:
    ensure_stream_topics(settings.endpoints, Codec(settings.endpoints.topic_prefix))
    controller = Controller(settings.endpoints.pinot_controller_url)
    for spec in specs:
        controller.put_schema(spec.schema, exists=False)
        controller.put_table(spec.table, exists=False)
        controller.wait_online(spec.name)


def drop(settings: Settings, specs: list[TableSpec]) -> None:
    controller = Controller(settings.endpoints.pinot_controller_url)
    for spec in specs:
        controller.delete_table(spec.name)
    for spec in specs:
        with contextlib.suppress(ControllerError):  # a server that does not answer (e.g. stopped) holds nothing
            poll(lambda name=spec.name: not controller.hosted(name), 60)  # a schema of a lingering table is refused
        controller.delete_schema(spec.name)
    admin = AdminClient({"bootstrap.servers": settings.endpoints.kafka_bootstrap_servers})
    prefix = settings.endpoints.topic_prefix
    for future in admin.delete_topics(list(Codec(prefix).topics), operation_timeout=30).values():
        future.result()
    delete_subjects(prefix)


def consuming(controller: Controller, specs: list[TableSpec]) -> dict[tuple[str, int], int]:
    """(table, partition) -> sequence number of its consuming segment (LLC names: table__partition__seq__time)."""
    found = {}
    for spec in specs:
        for segment in controller.consuming_segments(spec.name):
            _, partition, sequence, _ = segment.split("__")
            found[(spec.name, int(partition))] = int(sequence)
    return found


def write(db: str, city: str, per_tick: int, ticks: int, start_at: float, out: Queue) -> None:
    """One writer process: `per_tick` orders committed every TICK_S from `start_at` (wall clock); each commit's
    wall time and the orders committed so far go to `out`, then (city, None, total, latest start) when done."""
    committed, latest = 0, 0.0
    with psycopg.connect(db) as conn:
        for tick in range(ticks):
            due = start_at + tick * TICK_S
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            latest = max(latest, time.time() - due)
            place_orders(conn, per_tick, city=city)
            conn.commit()
            committed += per_tick
            out.put((city, time.time(), committed, 0.0))
    out.put((city, None, committed, latest))


def measure(services: Services, settings: Settings, table: str, rate: int, seconds: int, warmup_s: int,
            writers: int, relays: int) -> Run:  # fmt: skip
    """Writers commit `rate` events/s into a scratch database for warm-up + `seconds`, a relay publishes them to
    the topics of `settings`, and the probe reads `table`."""
    run = Run()
    tag = uuid.uuid4().hex[:8]
    cities = [f"Fresh-{tag}-{i}" for i in range(writers)]
    per_tick = max(1, round(rate * TICK_S / writers))
    ticks = int((warmup_s + seconds) / TICK_S)
    with scratch_database(services.database_url, "bench_fresh", migrated=True) as db:
        relay = RelayProcess(services, db, prefix=settings.endpoints.topic_prefix, processes=relays)
        try:
            time.sleep(3)  # the relay connects and takes its leases
            out: Queue = Queue()
            start_at = time.time() + 1
            processes = [  # staggered within a tick, so the commits spread over it
                Process(target=write, args=(db, city, per_tick, ticks, start_at + TICK_S * i / writers, out))
                for i, city in enumerate(cities)
            ]
            for process in processes:
                process.start()
            steady_from = start_at + warmup_s
            probe(services, table, cities, out, steady_from, run, db)
            run.held *= per_tick  # commits/s -> events/s
            for process in processes:
                process.join()
        finally:
            relay.terminate()
    return run


def probe(services: Services, table: str, cities: list[str], out: Queue, steady_from: float, run: Run,
          db: str) -> None:  # fmt: skip
    cursor = broker_connection(services.pinot_broker_url).cursor()
    pending: dict[str, list[tuple[float, int]]] = {city: [] for city in cities}
    commits: list[float] = []
    running, drained_by = set(cities), None
    grew_at: dict[int, float] = {}  # partition -> when its count last grew
    counts: dict[int, int] = {}
    load_at = steady_from
    city_list = ", ".join(f"'{city}'" for city in cities)
    query = f"SELECT city, $segmentName, COUNT(*) FROM {table} WHERE city IN ({city_list}) GROUP BY city, $segmentName LIMIT 100000"  # noqa: E501
    while running or any(pending.values()):
        while not out.empty():
            city, at, committed, latest = out.get()
            if at is None:
                running.discard(city)
                run.latest_tick_s = max(run.latest_tick_s, latest)
            else:
                pending[city].append((at, committed))
                commits.append(at)
        if not running and drained_by is None:
            with psycopg.connect(db) as conn:
                run.backlog = conn.execute("SELECT count(*) FROM order_service.outbox").fetchone()[0]
            drained_by = time.monotonic() + DRAIN_S
        if drained_by is not None and time.monotonic() > drained_by:
            break
        if running and time.time() >= load_at:
            run.loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
            load_at = time.time() + LOAD_EVERY_S
        try:
            cursor.execute(query)
        except pinotdb.exceptions.Error:  # e.g. the server answering no query in time while it builds
            run.unanswered += 1
            continue
        rows, seen_at = cursor.fetchall(), time.time()
        seen: dict[str, int] = defaultdict(int)
        partitions: dict[int, int] = defaultdict(int)
        for city, segment, n in rows:
            seen[city] += n
            partitions[int(segment.split("__")[1])] += n
        for partition, n in partitions.items():
            if n > counts.get(partition, 0):
                if running and partition in grew_at and grew_at[partition] >= steady_from:
                    run.stalls[partition] = max(run.stalls.get(partition, 0.0), seen_at - grew_at[partition])
                counts[partition], grew_at[partition] = n, seen_at
        for city, waiting in pending.items():
            while waiting and waiting[0][1] <= seen[city]:
                at, _ = waiting.pop(0)
                if at >= steady_from:
                    run.lags.append(seen_at - at)
        time.sleep(PROBE_S)
    steady = sorted(at for at in commits if at >= steady_from)
    run.unseen = sum(1 for waiting in pending.values() for at, _ in waiting if at >= steady_from)
    run.held = 0.0 if len(steady) < 2 else len(steady) / (steady[-1] - steady_from)  # commits/s


# --- the Pinot server's log: each commit's build time and the wait for the next consuming segment -----------

LOG_LINE = re.compile(  # time, level, logger (the segment's own), thread, message
    r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}) \w+ \[LLRealtimeSegmentDataManager_([^\]]+)\] \[[^\]]*\] (.*)$"
)
BUILT = re.compile(r"Successfully built segment in (\d+) ms, after lockWaitTime (\d+) ms")


@dataclass
class Commit:
    segment: str
    stopped: float  # consumption stopped (the threshold reached): the partition's stall begins
    wait_ms: int | None = None  # waiting for one of the server's build slots (0.11: 4 at once by default)
    build_ms: int | None = None
    built: float | None = None  # when the build ended
    resumed: float | None = None  # the next consuming segment started consuming: the stall ends


def commits_in_log(logs: list[Path], tables: set[str], since: float, until: float) -> list[Commit]:
    """Every segment of `tables` whose consumption stopped between `since` and `until` (epoch s), from the
    servers' logs: when it stopped, its build, and when the next segment of its partition started consuming."""
    stopped: dict[str, Commit] = {}
    started: dict[str, float] = {}
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()
        for line in lines:
            match = LOG_LINE.match(line)
            if not match or match[2].split("__")[0] not in tables:
                continue
            at = datetime.strptime(match[1], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            segment, message = match[2], match[3]
            if message.startswith("Stopping consumption due to") and since <= at <= until:
                stopped[segment] = Commit(segment, at)
            elif (built := BUILT.match(message)) and segment in stopped:
                commit = stopped[segment]
                commit.build_ms, commit.wait_ms, commit.built = int(built[1]), int(built[2]), at
            elif message.startswith("Starting consumption loop"):
                started[segment] = at
    for commit in stopped.values():
        name, partition, sequence, _ = commit.segment.split("__")
        prefix = f"{name}__{partition}__{int(sequence) + 1}__"
        commit.resumed = next((at for segment, at in started.items() if segment.startswith(prefix)), None)
    return sorted(stopped.values(), key=lambda commit: commit.stopped)


# --- report ---------------------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def report(rate: int, seconds: int, run: Run, seqs: tuple[dict, dict], commits: list[Commit]) -> None:
    before, after = seqs
    lags = run.lags
    verdict = "held it" if run.held >= rate * 0.98 else f"did NOT hold {rate:,}/s"
    print(
        f"writers: {run.held:,.0f} events/s after the warm-up ({verdict}); latest tick started "
        f"{run.latest_tick_s * 1000:,.0f} ms late; {run.backlog:,} outbox rows unpublished when they stopped"
    )
    if run.unanswered:
        print(f"probe: {run.unanswered:,} queries got no answer (counted as nothing new seen)")
    if run.unseen:
        print(f"NOT queryable {DRAIN_S} s after the writers stopped: {run.unseen} commits")
    per_table: dict[str, int] = defaultdict(int)  # by the copied table's own name
    for key, sequence in after.items():
        per_table[key[0].split("_", 1)[1]] += sequence - before.get(key, sequence)
    load = f"{sum(run.loads) / len(run.loads):.1f}, {max(run.loads):.1f}" if run.loads else "-"
    stalls = " ".join(f"p{p} {run.stalls[p]:.1f}" for p in sorted(run.stalls)) or "-"
    print()
    print(f"| rate/s | run | commits | p50 ms | p99 ms | p99.9 ms | max ms | segment commits ({', '.join(COPIED)}) "
          "| longest stall per partition (s) | load (1 min: mean, max) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    p = {q: percentile(lags, q) for q in (50, 99, 99.9)}
    print(
        f"| {rate:,} | {seconds / 60:.0f} min | {len(lags):,} | {ms(p[50])} | {ms(p[99])} | {ms(p[99.9])} "
        f"| {ms(max(lags, default=None))} | {' / '.join(str(per_table[name]) for name in COPIED)} "
        f"| {stalls} | {load} |"
    )
    if commits:
        print()
        print("segment commits in the server's log (stall = consumption stopped -> next segment consuming):")
        print("| segment | stopped | waited for a build slot ms | build ms | built -> consuming again ms | stall ms |")
        print("|---|---|---|---|---|---|")
        for commit in commits:
            after_build = None if commit.resumed is None or commit.built is None else commit.resumed - commit.built
            stall = None if commit.resumed is None else commit.resumed - commit.stopped
            stopped = datetime.fromtimestamp(commit.stopped).strftime("%H:%M:%S")
            print(
                f"| {commit.segment} | {stopped} | {commit.wait_ms if commit.wait_ms is not None else '-'} "
                f"| {commit.build_ms if commit.build_ms is not None else '-'} | {ms(after_build)} | {ms(stall)} |"
            )


def freshness_table(services: Services, settings: Settings, rate: int, seconds: int, warmup_s: int, writers: int,
                    relays: int, keep: bool = False) -> None:  # fmt: skip
    """One run on new copies of the order tables, printed as the table above; the copies are dropped after."""
    run_id = f"fresh{uuid.uuid4().hex[:6]}"
    settings, specs = copies(settings, run_id)
    logs = sorted((settings.stack.state_dir / "logs").glob("pinot-server*.log"))  # every server of the stack
    print(f"freshness: copies {', '.join(spec.name for spec in specs)}; asking {rate:,} events/s for {seconds} s")
    create(settings, specs)
    controller = Controller(settings.endpoints.pinot_controller_url)
    try:
        before = consuming(controller, specs)
        since = time.time()
        run = measure(services, settings, f"{run_id}_{PROBED}", rate, seconds, warmup_s, writers, relays)
        until = time.time()
        after = consuming(controller, specs)
        commits = commits_in_log(logs, {spec.name for spec in specs}, since, until)
        report(rate, seconds, run, (before, after), commits)
    finally:
        if not keep:
            drop(settings, specs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="events/s the writers commit")
    parser.add_argument("--seconds", type=int, default=1200, help="measured, after the warm-up")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--writers", type=int, default=3, help="writer processes")
    parser.add_argument("--relays", type=int, default=1, help="relay processes")
    parser.add_argument("--keep", action="store_true", help="keep the copies and their topics")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a run stopped by a signal still drops its copies
    print("the machine is shared: whatever else runs on its two cores shows in these figures", flush=True)
    freshness_table(local_services(), load_settings(), args.rate, args.seconds, args.warmup, args.writers,
                    args.relays, args.keep)  # fmt: skip


if __name__ == "__main__":
    main()
