"""Pinot benchmark (prints figures; not a test). Run from the repo root with the stack up:

    .venv/bin/python -m bench.bench_pinot [--rate 5000] [--seconds 60] [--writers 3] [--relays 1]
        [--volume 10000000] [--runs 30] [--skip-freshness] [--keep]

1. Freshness: commit -> queryable over copies of the order tables while `--writers` processes commit `--rate`
   events/s for `--seconds` (bench/bench_freshness.py, which runs it for as long as its aims need: segment
   commits included).
2. Query latency: `volume` order events (5 per order: placed .. delivered, one order in twenty cancelled
   after confirmation) are produced through the relay's own encoder to topics of the benchmark's own,
   together with the order ledger entries the triggers of migration 0015 would write for them (one at
   placement; a cancellation's two: the live state leaving, the cancelled one arriving). Copies of the
   `orders`, `order_events` and `order_ledger` tables (same configs, `bench_` names) ingest them, so the
   load never delays what other users of the stack ingest. The benchmark's topics are created as the stack's
   are (pipeline.contract.topics: the state topics compacted only after the history retention, the ledger's
   never). Once loaded, one check that the ledger queries over the copies equal the same sums over the upsert
   copy `bench_orders` ("ledger equals orders"). Then every library query runs `runs` times over the CLI's
   default window (the last 24 h) and over all the data, after three warm-up runs each; one table of
   p50/p99 as the client sees them (pinotdb) and as the broker reports them (`timeUsedMs`). Delivery
   queries read the shared delivery tables as they are. For each query over the aim, one traced run
   splits the broker's time from the server's.
3. The Pinot server's heap after a full GC (`jcmd`) and the segment sizes of the copies.

Heap: the dedup tables keep an MD5 key per event id on the server's heap (docs/pinot.md); the measured heap at
10 M events is in docs/pinot.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pinotdb
import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from bench.bench_freshness import freshness_table
from bench.stats import cell, percentile
from connectors import kafka
from connectors.pinot import Controller, broker_connection
from pipeline.analytics.queries import library, run_query
from pipeline.analytics.tables import apply, desired_specs
from pipeline.config import Settings, load_settings
from pipeline.contract.codec import Codec
from pipeline.contract.rows import OutboxRow
from pipeline.contract.topics import ensure_stream_topics
from pipeline.devstack.generator import CITIES, CUISINES
from tests.support.ledger import change_entries
from tests.support.payloads import order_payload
from tests.support.services import local_services

STEPS = ("placed", "confirmed", "preparing", "picked_up", "delivered")
HISTORY = timedelta(days=2)  # the synthetic orders are placed over the last two days
PREFIX = "bench_"  # the copies of the order tables
COPIED = ("orders", "order_events", "order_ledger")
TOPIC_PREFIX = "bench."
AIM_P50_MS, AIM_P99_MS = 30, 100


def bench_tables(settings: Settings) -> list[dict[str, Any]]:
    """The checked-in `orders`, `order_events` and `order_ledger`, renamed and reading the benchmark's own topics."""
    prefixed = settings.model_copy(
        update={"endpoints": settings.endpoints.model_copy(update={"topic_prefix": TOPIC_PREFIX})}
    )
    created = []
    for spec in desired_specs(prefixed):
        if spec.name in COPIED:
            schema, table = copy.deepcopy(spec.schema), copy.deepcopy(spec.table)
            schema["schemaName"] = table["tableName"] = table["segmentsConfig"]["schemaName"] = PREFIX + spec.name
            created.append({"schema": schema, "table": table})
    return created


def create_bench_tables(settings: Settings) -> None:
    ensure_stream_topics(settings.endpoints, Codec(TOPIC_PREFIX))
    controller = Controller(settings.endpoints.pinot_controller_url)
    for spec in bench_tables(settings):
        name = spec["table"]["tableName"]
        while controller.realtime_table(name) is None and controller.hosted(name):
            time.sleep(1)  # 0.11 lets a dropped table linger on its server; one created meanwhile misbehaves
        if controller.realtime_table(name) is None:
            controller.put_schema(spec["schema"], exists=controller.schema(name) is not None)
            controller.put_table(spec["table"], exists=False)
            controller.wait_online(name)


def drop_bench_tables(settings: Settings) -> None:
    controller = Controller(settings.endpoints.pinot_controller_url)
    for spec in bench_tables(settings):
        controller.delete_table(spec["table"]["tableName"])
    admin = AdminClient({"bootstrap.servers": settings.endpoints.kafka_bootstrap_servers})
    existing = admin.list_topics(timeout=10).topics
    topics = [topic for topic in Codec(TOPIC_PREFIX).topics if topic in existing]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()
    while set(topics) & set(admin.list_topics(timeout=10).topics):
        time.sleep(0.5)


def synthetic_order(
    order: int, orders: int, start: datetime, restaurants: list[tuple[str, ...]]
) -> Iterator[OutboxRow]:
    """The lifecycle events of synthetic order number `order` of `orders` placed over HISTORY from `start`, each
    followed by the ledger entries its trigger would write in the same transaction: the placement's, and a
    cancellation's two (the live state leaves, the cancelled one arrives); other status changes write none."""
    rid, name, city, cuisine = restaurants[order % len(restaurants)]
    order_id = str(uuid.UUID(int=order + (1 << 64), version=4))
    placed = start + HISTORY * ((order % orders) / orders)
    path = STEPS if order % 20 else (*STEPS[:2], "cancelled")
    position, previous = 0, None
    for step, status in enumerate(path):
        at = placed + timedelta(minutes=8 * step)
        payload = order_payload(
            order_id,
            placed,
            restaurant_id=rid,
            restaurant_name=name,
            city=city,
            cuisine=cuisine,
            status=status,
            payment_status="captured",
            cancel_reason="customer" if status == "cancelled" else None,
            updated_at=at.isoformat(),
        )
        event_type = "OrderPlaced" if step == 0 else "OrderCancelled" if status == "cancelled" else "OrderStatusChanged"
        entries = change_entries(previous, payload)
        rows = [("order", event_type, payload)] + [("order_ledger", "OrderLedgerEntry", entry) for entry in entries]
        for aggregate_type, row_type, body in rows:
            position += 1
            yield OutboxRow(
                position, str(uuid.uuid4()), aggregate_type, order_id, row_type, json.dumps(body), 1, step + 1, at
            )
        previous = payload


def load_volume(settings: Settings, events: int, first_order: int) -> tuple[int, int]:
    """Produce exactly `events` order events: whole lifecycles, the last one cut short if need be, each event with
    its ledger entries. Returns how many orders and ledger entries were produced."""
    endpoints = settings.endpoints
    codec = Codec(TOPIC_PREFIX)
    producer = Producer(kafka.producer_config(endpoints.kafka_bootstrap_servers, 300_000, 1_000_000))
    cities = list(CITIES)
    restaurants = [
        (str(uuid.UUID(int=i + (2 << 64), version=4)), f"R{i}", cities[i % len(cities)], CUISINES[i % len(CUISINES)])
        for i in range(400)
    ]
    orders = math.ceil(events / len(STEPS))
    start = datetime.now(UTC) - HISTORY
    print(f"volume: producing {events:,} order events for {orders:,} orders ...", flush=True)
    began, produced, entries, order = time.perf_counter(), 0, 0, first_order
    while produced < events:
        for row in synthetic_order(order, orders, start, restaurants):
            is_event = row.aggregate_type == "order"
            if is_event and produced == events:
                break  # the last event's own ledger entries were produced with it
            message = codec.encode(row)
            while True:
                try:
                    producer.produce(message.topic, message.value, message.key, headers=message.headers)
                    break
                except BufferError:
                    producer.poll(0.1)
            if is_event:
                produced += 1
            else:
                entries += 1
        order += 1
        producer.poll(0)
    if producer.flush(300):
        raise SystemExit("volume: Kafka did not take every message within 300 s")
    print(f"volume: produced with {entries:,} ledger entries in {time.perf_counter() - began:.0f} s", flush=True)
    return order - first_order, entries


def count(cursor: Any, table: str) -> int:
    cursor.execute(f"SELECT COUNT(*) FROM {table}")
    return cursor.fetchone()[0]


def query_latency(settings: Settings, volume: int, runs: int) -> None:
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    tables = {name: PREFIX + name for name in COPIED}
    want = {name: count(cursor, table) for name, table in tables.items()}  # rows each copy must hold
    before = want["order_events"]
    if before < volume:  # a run after --keep reuses what the first one loaded
        orders, entries = load_volume(settings, volume - before, first_order=before)
        want = {
            "orders": want["orders"] + orders,
            "order_events": volume,
            "order_ledger": want["order_ledger"] + entries,
        }
    began = time.monotonic()
    while True:
        have = {name: count(cursor, tables[name]) for name in want}
        if all(have[name] >= want[name] for name in want):
            break
        if time.monotonic() - began > 3600:
            behind = ", ".join(f"{tables[name]} {have[name]:,} of {want[name]:,}" for name in want)
            raise SystemExit(f"volume: not all ingested after an hour: {behind}")
        time.sleep(5)
    print(
        f"volume: {have['order_events']:,} order events, {have['orders']:,} orders, "
        f"{have['order_ledger']:,} ledger entries (ingested {time.monotonic() - began:.0f} s)"
    )
    now = datetime.now(UTC)
    windows = {"24 h": (now - timedelta(days=1), now), "all": (now - HISTORY - timedelta(hours=1), now)}
    differing = ledger_differs(cursor, *windows["all"], tables)
    print("ledger equals orders:", f"no: {', '.join(differing)}" if differing else "yes", "(over all the data)")
    params = {"deliveries_within_radius": {"lat": 52.52, "lon": 13.405, "radius_m": 2000}}
    print(f"queries: {runs} runs each per window after 3 warm-up runs; wall = pinotdb round trip, broker = timeUsedMs")
    print(
        f"{'query':<26} {'window':<6} {'wall p50':>9} {'wall p99':>9} {'broker p50':>11} {'broker p99':>11} {'rows':>7}"
    )
    over = []
    for name in library():
        for label, (since, until) in windows.items():
            wall, broker = [], []
            for run in range(3 + runs):
                began_s = time.perf_counter()
                result = run_query(
                    cursor, name, since=since, until=until, grain="hour", tables=tables, **params.get(name, {})
                )
                if run >= 3:
                    wall.append((time.perf_counter() - began_s) * 1000)
                    broker.append(result.broker_ms)
            print(
                f"{name:<26} {label:<6} {cell(wall, 50, 1):>9} {cell(wall, 99, 1):>9} {cell(broker, 50):>11} "
                f"{cell(broker, 99):>11} {len(result.rows):7}",
                flush=True,
            )
            # Too few runs for a p99: the maximum stands in for it (never below it).
            p50, p99 = percentile(wall, 50) or max(wall), percentile(wall, 99) or max(wall)
            if p99 > AIM_P99_MS or p50 > AIM_P50_MS:
                over.append((name, label, since, until))
    broker = urlsplit(settings.endpoints.pinot_broker_url)
    traced = pinotdb.connect(host=broker.hostname, port=broker.port, path="/query/sql", query_options="trace=true")
    for name, label, since, until in over:
        where_time_goes(traced.cursor(), name, label, since, until, tables, params.get(name, {}))


# Each ledger query against the same sums over the upsert copy: its key column, the result columns compared
# (summed over periods), the orders' expressions for them, and whether cancelled orders are left out.
LEDGER_CHECKS = (
    ("gmv_by_city", "city", ("gmv_cents", "orders"), "SUM(total_cents), COUNT(*)", True),
    ("gmv_by_cuisine", "cuisine", ("gmv_cents", "orders"), "SUM(total_cents), COUNT(*)", True),
    ("gmv_by_restaurant", "restaurant_id", ("gmv_cents", "orders"), "SUM(total_cents), COUNT(*)", True),
    ("top_restaurants", "restaurant_id", ("gmv_cents", "orders"), "SUM(total_cents), COUNT(*)", True),
    (
        "cancellation_rate",
        "restaurant_id",
        ("orders", "cancelled"),
        "COUNT(*), SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END)",
        False,
    ),
    (
        "average_basket",
        "city",
        ("avg_subtotal_cents", "avg_items", "orders"),
        "SUM(subtotal_cents) / COUNT(*), SUM(item_count) / COUNT(*), COUNT(*)",
        True,
    ),
)


def ledger_differs(cursor: Any, since: datetime, until: datetime, tables: dict[str, str]) -> list[str]:
    """The ledger queries whose answers over the copies differ from the same sums over the upsert copy in the
    window the query used (so the synthetic ledger entries are what the triggers would write). The limit is
    raised so that top_restaurants answers every restaurant."""
    differing = []
    for name, key, compared, expressions, live_only in LEDGER_CHECKS:
        result = run_query(cursor, name, since=since, until=until, grain="day", limit=10_000, tables=tables)
        columns = [column.name for column in result.columns]
        ledger: dict[str, list[float]] = {}
        for row in result.rows:
            sums = ledger.setdefault(row[columns.index(key)], [0] * len(compared))
            for i, column in enumerate(compared):
                sums[i] += row[columns.index(column)]
        live = " AND status <> 'cancelled'" if live_only else ""
        cursor.execute(
            f"SELECT {key}, {expressions} FROM {tables['orders']} "
            f"WHERE placed_at >= %(since)s AND placed_at < %(until)s{live} GROUP BY {key} LIMIT 100000",
            {"since": round(result.since.timestamp() * 1000), "until": round(result.until.timestamp() * 1000)},
        )
        orders = {row[0]: row[1:] for row in cursor.fetchall()}
        same = ledger.keys() == orders.keys() and all(
            math.isclose(a, b, rel_tol=1e-9) for k, sums in ledger.items() for a, b in zip(sums, orders[k], strict=True)
        )
        if not same:
            differing.append(name)
    return differing


def where_time_goes(
    cursor: Any, name: str, label: str, since: datetime, until: datetime, tables: dict, params: dict
) -> None:
    """One traced run: the server's own time (its InstanceResponseOperator) against the broker's total."""
    began = time.perf_counter()
    result = run_query(cursor, name, since=since, until=until, grain="hour", tables=tables, **params)
    wall = (time.perf_counter() - began) * 1000
    stats = cursor.raw_query_response["response"]
    server = 0
    for trace in stats.get("traceInfo", {}).values():
        for level in json.loads(trace):
            for operator in level.get("0", []):
                server = max(server, operator.get("InstanceResponseOperator Time", 0))
    print(
        f"over the aim: {name} ({label}): wall {wall:.0f} ms = broker {result.broker_ms} ms (server {server} ms, "
        f"broker's own {result.broker_ms - server} ms) + client {wall - result.broker_ms:.0f} ms; "
        f"{stats['numSegmentsProcessed']} segments, {stats['numDocsScanned']:,} docs, "
        f"{stats['numEntriesScannedPostFilter']:,} entries after the filter, {len(result.rows):,} rows"
    )


def pinot_footprint(settings: Settings) -> None:
    pid = (settings.stack.state_dir / "pids" / "pinot-server.pid").read_text().strip()
    subprocess.run(["jcmd", pid, "GC.run"], capture_output=True, check=True)
    heap = subprocess.run(["jcmd", pid, "GC.heap_info"], capture_output=True, text=True, check=True).stdout
    print("pinot server heap after a full GC (all tables of the stack):", " ".join(heap.splitlines()[1].split()[2:6]))
    for table in COPIED:
        url = f"{settings.endpoints.pinot_controller_url}/tables/{PREFIX}{table}/size"
        size = requests.get(url, timeout=60).json()
        segments = size["realtimeSegments"]["segments"]
        on_disk = size["reportedSizeInBytes"] / 2**20
        print(f"pinot {PREFIX}{table}: {len(segments)} segments, {on_disk:,.0f} MiB (consuming segments count 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000, help="events/s the freshness writer commits")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="seconds before freshness is measured")
    parser.add_argument("--writers", type=int, default=3, help="freshness writer processes")
    parser.add_argument("--relays", type=int, default=1, help="relay processes publishing the freshness writes")
    parser.add_argument("--volume", type=int, default=10_000_000, help="order events the copies must hold")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the loaded copies for another run")
    args = parser.parse_args()
    settings = load_settings()
    services = local_services()
    print("the machine is shared: whatever else runs on its two cores shows in these figures", flush=True)
    apply(settings)
    if not args.skip_freshness:
        freshness_table(services, settings, args.rate, args.seconds, args.warmup, args.writers, args.relays)
    create_bench_tables(settings)
    try:
        query_latency(settings, args.volume, args.runs)
        pinot_footprint(settings)
    finally:
        if not args.keep:
            drop_bench_tables(settings)


if __name__ == "__main__":
    main()
