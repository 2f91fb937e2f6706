"""Soak run (prints figures; not a test). Run from the repo root with the stack up:

    .venv/bin/python -m bench.soak [--rate 2000] [--minutes 30] [--sample-s 60]

The generator writes real activity through the service schemas at `rate` events/s for `minutes`, the relay
publishes it, Pinot ingests it (Superset, when the stack runs it, stays up beside). Every `sample-s` a row:
relay RSS, relay backlog and the age of its oldest event, Pinot server RSS and JVM heap in use (`jstat`,
after the young collections it does anyway), the keys Pinot's dedup tables hold (their row count: one key
per row), Superset's RSS. At the end: the growth of each per hour (least squares over the samples), whether
Pinot equals PostgreSQL, and Pinot's dedup memory projected to a year of 20M events a day.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from connectors.pinot import broker_connection
from pipeline.analytics.tables import apply
from pipeline.config import load_settings
from pipeline.devstack.generator import CITIES, Generator
from pipeline.devstack.stack import LocalStack
from tests.support.database import scratch_database
from tests.support.exactness import (
    Ingested,
    assert_deliveries_equal,
    assert_order_history_counted_once,
    assert_orders_equal,
    ledger_ingested,
)
from tests.support.load import free_port
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services

JSTAT = "/usr/lib/jvm/java-17-openjdk-amd64/bin/jstat"
JCMD = "/usr/lib/jvm/java-17-openjdk-amd64/bin/jcmd"
# The classes a dedup (or upsert) key is made of on the server's heap.
KEY_CLASSES = ("org.apache.pinot.spi.data.readers.PrimaryKey", "org.apache.pinot.spi.utils.ByteArray")
KEY_CLASSES += ("java.util.concurrent.ConcurrentHashMap$Node",)
EVENTS_PER_DAY = 20_000_000
# Bytes per dedup key on the server's heap (Pinot 0.11's PartitionDedupMetadataManager: a ConcurrentHashMap
# from the key to its segment), measured with `jcmd GC.class_histogram` after a soak (docs/faults.md). NONE
# keeps the key: PrimaryKey, Object[1], String and its bytes, map node and slot. MD5: a 16-byte ByteArray.
KEY_BYTES = {"NONE": 167, "MD5": 96}
COLUMNS = ["minute", "relay_rss_mb", "backlog_rows", "backlog_age_s", "published", "server_rss_mb", "heap_mb"]
COLUMNS += ["dedup_keys", "superset_rss_mb"]


def rss_mb(pid: int | None) -> float:
    """Resident memory of a process and its children, in MB (0 when it does not run)."""
    if pid is None:
        return 0.0
    total = 0
    for each in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except FileNotFoundError:
            continue
        total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return total / 1024


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found + [grandchild for child in found for grandchild in _children(child)]


def heap_mb(pid: int | None) -> float:
    """The JVM's heap in use (survivors, eden, old generation), from jstat; 0 when it cannot be read."""
    if pid is None:
        return 0.0
    result = subprocess.run([JSTAT, "-gc", str(pid)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return 0.0
    names, values = (line.split() for line in result.stdout.strip().splitlines()[:2])
    gc = dict(zip(names, (float(v) for v in values), strict=True))
    return (gc["S0U"] + gc["S1U"] + gc["EU"] + gc["OU"]) / 1024


def relay_metrics(port: int) -> tuple[int, float, int]:
    """(backlog rows, age of the oldest unpublished event in s, events published) from the relay's /metrics."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    rows = sum(float(v) for v in re.findall(r"^nibble_relay_backlog_rows\{[^}]*\} (\S+)$", text, re.M))
    ages = [float(v) for v in re.findall(r"^nibble_relay_oldest_event_age_seconds\{[^}]*\} (\S+)$", text, re.M)]
    published = sum(float(v) for v in re.findall(r"^nibble_relay_events_published_total\{[^}]*\} (\S+)$", text, re.M))
    return int(rows), max(ages, default=0.0), int(published)


def dedup_keys(cursor) -> int:
    keys = 0
    for table in ("order_events", "order_ledger", "delivery_events"):
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        keys += int(cursor.fetchone()[0])
    return keys


def per_hour(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of values over time, per hour."""
    if len(times_s) < 2 or len(set(times_s)) < 2:
        return 0.0
    return statistics.linear_regression(times_s, values).slope * 3600


def soak(rate: int, minutes: float, sample_s: float) -> None:
    settings = load_settings()
    services = Services.from_settings(settings)
    stack = LocalStack(settings, report=lambda _line: None)
    stack.up()
    suffix = f"-soak{uuid.uuid4().hex[:5]}"
    with scratch_database(services.database_url, prefix="soak", migrated=True) as db:
        apply(services.settings())
        port = free_port()
        relay = RelayProcess(services, db, relay_metrics_port=str(port))
        wait_until(lambda: _answers(port), 60, what="the relay's metrics endpoint")
        generator = Generator(db, seed=5, city_suffix=suffix, time_scale=60)
        writer = threading.Thread(target=generator.run_live, args=(rate, minutes * 60), daemon=True)
        cursor = broker_connection(services.pinot_broker_url).cursor()
        print(f"soak: {rate} events/s for {minutes:g} min, a sample every {sample_s:g} s (shared machine)")
        print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        writer.start()
        while True:
            elapsed = time.monotonic() - started
            rows, age, published = relay_metrics(port)
            server = stack.pid("pinot-server")
            sample = {
                "minute": round(elapsed / 60, 1),
                "relay_rss_mb": round(rss_mb(relay.process.pid), 1),
                "backlog_rows": rows,
                "backlog_age_s": round(age, 1),
                "published": published,
                "server_rss_mb": round(rss_mb(server), 1),
                "heap_mb": round(heap_mb(server), 1),
                "dedup_keys": dedup_keys(cursor),
                "superset_rss_mb": round(rss_mb(stack.pid("superset")), 1) if "superset" in stack.by_name else 0,
            }
            samples.append(sample)
            print("| " + " | ".join(str(sample[c]) for c in COLUMNS) + " |", flush=True)
            if not writer.is_alive():
                break
            time.sleep(max(0.0, started + len(samples) * sample_s - time.monotonic()))
        print(f"\nwriter done after {(time.monotonic() - started) / 60:.1f} min; draining")
        wait_until(lambda: relay_metrics(port)[0] == 0, 600, what="the relay to drain")
        relay.terminate()
        report_growth(samples)
        report_key_objects(stack.pid("pinot-server"))
        check_exactness(db, suffix, cursor)


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).ok
    except requests.RequestException:
        return False


def report_growth(samples: list[dict[str, float]]) -> None:
    steady = samples[1:] or samples  # the first sample is taken before any load
    times = [s["minute"] * 60 for s in steady]
    print("\ngrowth per hour (least squares over the samples after the first):")
    for column in COLUMNS[1:]:
        print(f"  {column:<16} {per_hour(times, [s[column] for s in steady]):+,.1f}")
    keys_per_hour = per_hour(times, [s["dedup_keys"] for s in steady])
    heap_per_hour = per_hour(times, [s["heap_mb"] for s in steady])
    if keys_per_hour > 0:
        print(f"  heap per dedup key (heap growth / key growth): {heap_per_hour * 2**20 / keys_per_hour:,.0f} bytes")
    year_keys = EVENTS_PER_DAY * 365
    print(f"\nPinot dedup metadata for a year at {EVENTS_PER_DAY:,} events/day ({year_keys:,} keys, no TTL in 0.11):")
    for function, key_bytes in KEY_BYTES.items():
        print(f"  hashFunction {function:<4}: {year_keys * key_bytes / 2**30:,.0f} GiB of heap ({key_bytes} B/key)")
    print(f"  per day of keys kept (MD5): {EVENTS_PER_DAY * KEY_BYTES['MD5'] / 2**30:.1f} GiB")


def report_key_objects(server: int | None) -> None:
    """Live instances of the classes keys are made of, from the server's class histogram (a full GC)."""
    if server is None:
        return
    result = subprocess.run([JCMD, str(server), "GC.class_histogram"], capture_output=True, text=True, check=False)
    print("\nPinot server heap, classes of dedup/upsert keys (jcmd GC.class_histogram):")
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] in KEY_CLASSES:
            print(f"  {fields[3]:<48} {int(fields[1]):>12,} instances {int(fields[2]) / 2**20:>9,.1f} MiB")


def assert_ledger_sums(ingested: Ingested) -> None:
    assert ledger_ingested(ingested), "Pinot's order ledger does not sum to PostgreSQL's orders"


def check_exactness(db: str, suffix: str, cursor) -> None:
    now = datetime.now(UTC)
    ingested = Ingested(db, [city + suffix for city in CITIES], now - timedelta(days=2), now, cursor)
    checks = [assert_orders_equal, assert_deliveries_equal, assert_order_history_counted_once, assert_ledger_sums]

    def exact() -> bool:
        try:
            for check in checks:
                check(ingested)
        except AssertionError:
            return False
        return True

    try:
        wait_until(exact, 300, what="Pinot to equal PostgreSQL")
        print(
            "\nexactness: Pinot equals PostgreSQL (orders per city and status with GMV to the cent, deliveries, "
            "order history counted once, the order ledger's sums)"
        )
    except AssertionError as exc:
        print(f"\nexactness: FAILED: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000, help="events/s the generator aims at")
    parser.add_argument("--minutes", type=float, default=30, help="how long the generator writes")
    parser.add_argument("--sample-s", type=float, default=60, help="seconds between samples")
    args = parser.parse_args()
    soak(args.rate, args.minutes, args.sample_s)


if __name__ == "__main__":
    main()
