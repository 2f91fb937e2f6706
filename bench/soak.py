"""Compressed soak (prints figures; not a test): simulated days of Nibble-like traffic through the whole
pipeline (generator -> outbox -> relay -> Kafka -> Pinot, the minion moving history offline), with Pinot's
window applied in simulated time. Run from the repo root with the stack up:

    .venv/bin/python -m bench.soak [--days 60] [--peak-per-minute 20] [--window 3d] [--restart]

The tables are a set of the soak's own (a table prefix, topics of its own) beside the stack's. Past days are
written oldest first, each stamped with its simulated time (tests/support/history.py). Pinot's retention and its
ingestion filter count from the real clock, so after each day the realtime window is set to "the time since that
day's end + the window" and the retention manager is run: the realtime parts keep the window of simulated days
as they would in production, while the minion moves each closed day offline (the window closes in no further
than the minion has got, so a slow minion shows as more realtime rows). Per simulated day a row: achieved
events/s (events written / wall seconds, writing and relaying), realtime and offline rows of the history tables,
dedup keys (realtime rows of the dedup tables) and upsert keys (live keys of the state tables) of the soak's
tables, the Pinot server's live heap after a full GC (`jcmd GC.run`, then `jstat`: the whole server, other
tables on it included) and RSS. At the end every library query over the whole range and the event history are
compared with PostgreSQL (tests/support/exactness.py); the state tables must hold the window, nothing stale.
Exit status 1 when that check fails. `--restart`: then `kill -9` the Pinot server, start it and time until every
table of the soak answers its row count again.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pinotdb.exceptions
import psycopg
from confluent_kafka import KafkaException

from connectors import kafka
from connectors.pinot import Controller, broker_connection
from pipeline.analytics.tables import TASK_TYPE, TableStatus, apply, desired_specs, table_status
from pipeline.config import Settings, load_settings, span_seconds
from pipeline.contract.codec import Codec
from pipeline.contract.topics import ensure_stream_topics
from pipeline.devstack.generator import Generator
from pipeline.devstack.stack import LocalStack
from tests.support.database import scratch_database
from tests.support.exactness import QUERY_CHECKS, STATE_TABLES, Ingested, backlog, compare, record_committed_events
from tests.support.history import drop_tables_and_topics, finish, shift_outbox_clock, write_span
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services

JSTAT = "/usr/lib/jvm/java-17-openjdk-amd64/bin/jstat"
JCMD = "/usr/lib/jvm/java-17-openjdk-amd64/bin/jcmd"
COLUMNS = ["day", "events", "events_per_s", "realtime_rows", "offline_rows", "dedup_keys", "upsert_keys"]
COLUMNS += ["live_heap_mb", "server_rss_mb"]


def rss_mb(pid: int | None) -> float:
    """Resident memory of a process, in MB (0 when it does not run)."""
    if pid is None:
        return 0.0
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+)", status)
    return int(found.group(1)) / 1024 if found else 0.0


def live_heap_mb(pid: int | None) -> float:
    """The JVM's heap in use right after a full collection (`jcmd GC.run`), from jstat; 0 when unreadable."""
    if pid is None:
        return 0.0
    subprocess.run([JCMD, str(pid), "GC.run"], capture_output=True, check=False)
    result = subprocess.run([JSTAT, "-gc", str(pid)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return 0.0
    names, values = (line.split() for line in result.stdout.strip().splitlines()[:2])
    gc = dict(zip(names, (float(v) for v in values), strict=True))
    return (gc["S0U"] + gc["S1U"] + gc["EU"] + gc["OU"]) / 1024


def with_window(settings: Settings, window_s: int) -> Settings:
    pinot = settings.pinot.model_copy(update={"realtime_window": f"{window_s // 3600}h"})
    return settings.model_copy(update={"pinot": pinot})


def soak(days: int, peak_per_minute: float, window: str, restart: bool) -> int:
    base = load_settings()
    services = Services.from_settings(base)
    stack = LocalStack(base, report=lambda _line: None)
    tag = uuid.uuid4().hex[:6]
    table_prefix, topic_prefix = f"soak{tag}_", f"soak{tag}."
    pinot = base.pinot.model_copy(
        update={
            "table_prefix": table_prefix,
            "history_bucket": "1d",
            "history_buffer": "10m",
            "minion_schedule": "10s",
            "segment_rows": 20_000,
            "segment_time": "1m",
        }
    )
    settings = services.settings(topic_prefix).model_copy(update={"pinot": pinot})
    window_s = span_seconds(window)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days)
    print(f"soak: {days} simulated days from {start:%Y-%m-%d}, window {window}, peak {peak_per_minute:g} orders/min")
    print("(shared machine: 2 cores, the stack's other users beside; heap and RSS are the whole server's)")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
    with scratch_database(services.database_url, "soak", migrated=True) as db:
        shift_outbox_clock(db)
        record_committed_events(db)
        # Pinot's controller reads a new topic's partitions at once; a loaded Kafka may not list it yet.
        codec = Codec(topic_prefix)
        ensure_stream_topics(settings.endpoints, codec)
        bootstrap = settings.endpoints.kafka_bootstrap_servers
        topics = [stream.topic for stream in codec.streams.values()]
        wait_until(lambda: all(_listed(bootstrap, t) for t in topics), 60, what="Kafka to list the topics")
        # The first days are written with the window spanning them all; it then closes in day by day.
        apply(with_window(settings, days * 86_400 + window_s + 86_400))
        generator = Generator(db, seed=60, city_suffix=f"-{tag}")
        relay = RelayProcess(services, db, topic_prefix)
        cursor = broker_connection(services.pinot_broker_url).cursor()
        scope = None
        try:
            for day in range(days + 1):  # the last "day" is today up to now
                began = time.monotonic()
                first = start + timedelta(days=day)
                last = min(first + timedelta(days=1), datetime.now(UTC) - timedelta(minutes=1))
                with_events = _events(db)
                write_span(generator, first, last, peak_per_minute)
                wait_until(lambda: backlog(db) == 0, 900, what="the relay to publish the day")
                events = _events(db) - with_events
                elapsed = time.monotonic() - began
                simulated_now = first + timedelta(days=1)
                behind_s = int((datetime.now(UTC) - simulated_now).total_seconds())
                keep_s = _kept_for_the_minion(settings)
                if behind_s > 0 and keep_s is not None:
                    apply(with_window(settings, -(-max(behind_s + window_s, keep_s) // 3600) * 3600))
                    _run_retention(settings)
                statuses = _status(settings)
                _row(day, events, elapsed, statuses, stack.pid("pinot-server"))
            finish(generator, datetime.now(UTC))
            wait_until(lambda: backlog(db) == 0, 900, what="the relay to publish the last steps")
            cities = sorted({r.city for r in generator.world.restaurants})
            scope = Ingested(db, cities, start, datetime.now(UTC), _PrefixedCursor(cursor, table_prefix))
            exact = _exact(scope)
            if restart:
                _restart(stack, settings, table_prefix)
                exact = _exact(scope) and exact
        finally:
            relay.terminate()
            drop_tables_and_topics(settings, topic_prefix)
    return 0 if exact else 1


def _listed(bootstrap: str, topic: str) -> bool:
    """Kafka lists the topic's partitions and their leaders answer (a new topic's may not yet, under load)."""
    try:
        return bool(kafka.watermarks(bootstrap, topic))
    except KafkaException:
        return False


def _events(db: str) -> int:
    with psycopg.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM public.committed_events").fetchone()[0])


def _kept_for_the_minion(settings: Settings) -> int | None:
    """Seconds of realtime rows the minion still needs: back to an hour before its lowest watermark (the
    broker's boundary) and an hour's margin; None before it has moved anything. The days are written without
    waiting for it (a consuming segment that reads nothing by its flush time waits an hour in 0.11), so the
    window only closes in as far as the minion has got."""
    controller = Controller(settings.endpoints.pinot_controller_url)
    hybrid = [f"{spec.name}_REALTIME" for spec in desired_specs(settings) if spec.offline is not None]
    marks = [controller.task_watermark_ms(TASK_TYPE, name) for name in hybrid]
    if None in marks:
        return None
    return int(time.time() - min(marks) / 1000) + 2 * 3600


def _status(settings: Settings) -> list[TableStatus]:
    """The tables' status once the broker answers for every segment: another user of the shared stack may be
    restarting the Pinot server (its segments are unavailable meanwhile)."""
    statuses: list[TableStatus] = []

    def answered() -> bool:
        try:
            statuses[:] = table_status(settings)
        except pinotdb.exceptions.Error:
            return False
        return True

    wait_until(answered, 900, what="the broker to answer for every segment of the soak's tables")
    return statuses


def _run_retention(settings: Settings) -> None:
    controller = Controller(settings.endpoints.pinot_controller_url)
    for spec in desired_specs(settings):
        controller.run_periodic_task("RetentionManager", spec.name, "REALTIME")


def _row(day: int, events: int, elapsed: float, statuses: list[TableStatus], server: int | None) -> None:
    history = [s for s in statuses if s.hybrid]
    row = {
        "day": day,
        "events": events,
        "events_per_s": round(events / elapsed) if elapsed else 0,
        "realtime_rows": sum(s.realtime_rows for s in history),
        "offline_rows": sum(s.offline_rows or 0 for s in history),
        "dedup_keys": sum(s.heap_keys for s in statuses if s.keys == "dedup"),
        "upsert_keys": sum(s.heap_keys for s in statuses if s.keys == "upsert"),
        "live_heap_mb": round(live_heap_mb(server)),
        "server_rss_mb": round(rss_mb(server)),
    }
    print("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |", flush=True)


class _PrefixedCursor:
    """A pinotdb cursor that reads the soak's tables where a query names the stack's (`FROM orders`)."""

    def __init__(self, cursor, prefix: str) -> None:
        self._cursor, self._prefix = cursor, prefix

    def execute(self, query: str, params=None):
        return self._cursor.execute(re.sub(r"\bFROM (\w+)", rf"FROM {self._prefix}\1", query), params)

    def __getattr__(self, attribute: str):
        return getattr(self._cursor, attribute)


def _exact(scope: Ingested) -> bool:
    """The history equals PostgreSQL across both parts, the state tables hold the window with nothing stale,
    and every library query over the whole range equals PostgreSQL."""
    state = {spec.table for spec in STATE_TABLES}
    wrong = [d for d in compare(scope).differences if d.table not in state or d.kind != "missing"]
    failed = [f"{d}" for d in wrong[:10]]
    for name, check in sorted(QUERY_CHECKS.items()):
        try:
            check(scope)
        except AssertionError as exc:
            failed.append(f"query {name}: {(str(exc).splitlines() or ['differs'])[0]}")
    days = (scope.until - scope.since).days
    if failed:
        print("\nexactness: FAILED\n  " + "\n  ".join(failed))
        return False
    print(
        f"\nexactness: the event history and all {len(QUERY_CHECKS)} library queries over {days} days equal PostgreSQL"
    )
    return True


def _restart(stack: LocalStack, settings: Settings, prefix: str) -> None:
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    names = [spec.name for spec in desired_specs(settings)]
    counts = {name: _count(cursor, name) for name in names}
    began = time.monotonic()
    healthy_s = stack.restart("pinot-server", hard=True)
    wait_until(lambda: all(_count(cursor, name) == n for name, n in counts.items()), 900, what="the tables to answer")
    print(
        f"\nPinot server kill -9 and restart: healthy after {healthy_s:.1f} s, every {prefix}* table answering its "
        f"row count after {time.monotonic() - began:.1f} s"
    )


def _count(cursor, name: str) -> int | None:
    try:
        cursor.execute(f"SELECT COUNT(*) FROM {name}")
        row = cursor.fetchone()
        return int(row[0]) if row else 0
    except Exception:  # the broker answers errors while the server comes back: not an answer yet
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60, help="simulated days written before today")
    parser.add_argument("--peak-per-minute", type=float, default=20, help="orders per minute at a dinner peak")
    parser.add_argument("--window", default="3d", help="the realtime window in simulated time")
    parser.add_argument("--restart", action="store_true", help="then kill -9 the Pinot server and time its return")
    args = parser.parse_args()
    sys.exit(soak(args.days, args.peak_per_minute, args.window, args.restart))


if __name__ == "__main__":
    main()
