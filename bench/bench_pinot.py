"""Pinot benchmark (prints figures; not a test). Run from the repo root with the stack up:

    .venv/bin/python -m bench.bench_pinot [--rate 2000] [--seconds 90] [--warmup 40] [--volume 5000000] [--runs 50]

1. Freshness: the generator writes real activity through the service schemas at a steady `rate` events/s,
   the relay publishes it, and a probe polls Pinot: for each commit, the time until its newest order
   event is queryable in `order_events` (commit to queryable), p50/p99, once the rate is steady.
2. Query latency: `volume` synthetic order events (a million orders) are produced straight to the orders
   topic (the relay's own encoder, so the bytes are what Pinot ingests from the relay) unless
   `order_events` already holds that many, then every query of the library runs `runs` times; p50/p99 per
   query, as the broker answers them through pinotdb.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from connectors import kafka
from connectors.pinot import broker_connection
from pipeline.analytics.queries import library, run_query
from pipeline.analytics.tables import apply
from pipeline.config import Settings, load_settings
from pipeline.contract.codec import Codec
from pipeline.devstack.generator import CITIES, CUISINES, Generator
from pipeline.outbox.store import OutboxRow
from tests.support.database import scratch_database
from tests.support.relay import RelayProcess
from tests.support.services import Services

ROOT = Path(__file__).resolve().parent.parent


def freshness(rate: int, seconds: int, warmup_s: int) -> None:
    settings = load_settings()
    with scratch_database(settings.endpoints.database_url, "bench_pinot", migrated=True) as db:
        _freshness(settings, db, rate, seconds, warmup_s)


def _freshness(settings: Settings, db: str, rate: int, seconds: int, warmup_s: int) -> None:
    relay = RelayProcess(Services.from_settings(settings), db)
    suffix = f"-f{uuid.uuid4().hex[:5]}"
    lags: list[float] = []
    stop = threading.Event()
    commits: list[tuple[float, int]] = []  # (commit wall time, newest order outbox occurred_at ms)
    stamped = {"newest": 0, "from": time.time() + 3 + warmup_s}

    def probe() -> None:
        cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
        while not stop.is_set() or commits:
            cursor.execute(
                "SELECT MAX(occurred_at) FROM order_events WHERE city = %(city)s", {"city": "Berlin" + suffix}
            )
            newest = float(cursor.fetchone()[0])
            seen_at = time.time()
            while commits and commits[0][1] <= newest:
                lags.append(seen_at - commits.pop(0)[0])
            time.sleep(0.02)

    try:
        time.sleep(3)
        generator = Generator(db, seed=11, city_suffix=suffix, time_scale=60)
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        print(
            f"freshness: {rate} events/s for {seconds} s through the service schemas, measured after a {warmup_s} s "
            "warm-up (the first orders' lifecycles fill up the event rate) ...",
            flush=True,
        )

        def stamp(conn: psycopg.Connection) -> None:
            committed = time.time()
            (newest,) = conn.execute(
                "SELECT (extract(epoch FROM max(updated_at)) * 1000)::bigint FROM order_service.orders WHERE city = %s",
                ("Berlin" + suffix,),
            ).fetchone()
            conn.commit()
            # Only commits that changed the probed city count: the others would be "seen" at once.
            if newest and newest > stamped["newest"]:
                stamped["newest"] = newest
                if committed >= stamped["from"]:
                    commits.append((committed, newest))

        generator.run_live(rate, seconds, ticks_per_s=10, on_commit=stamp)
        ended = time.time()
        stop.set()
        prober.join(timeout=30)
        cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
        window = {
            "cities": [city + suffix for city in CITIES],
            "since": int(stamped["from"] * 1000),
            "until": int(ended * 1000),
        }
        events = 0
        for table in ("order_events", "delivery_events"):
            cursor.execute(
                f"SELECT COUNT(*) FROM {table} WHERE city IN (%(cities)s) "
                "AND occurred_at >= %(since)s AND occurred_at < %(until)s",
                window,
            )
            events += cursor.fetchone()[0]
        steady_s = ended - stamped["from"]
        print(f"freshness: {events:,} events in the {steady_s:.0f} s after warm-up = {events / steady_s:,.0f} events/s")
        q = statistics.quantiles(lags, n=100)
        print(
            f"freshness: {len(lags)} commits probed: commit -> queryable in Pinot p50 {q[49] * 1000:.0f} ms, "
            f"p99 {q[98] * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
        )
    finally:
        relay.terminate()


def load_volume(volume: int) -> None:
    """Produce `volume` order events (5 per order, lifecycle order) for a million-order history."""
    settings = load_settings()
    codec = Codec(settings.endpoints.topic_prefix)
    e = settings.endpoints
    kafka.ensure_topics(e.kafka_bootstrap_servers, codec.topics, e.kafka_topic_partitions, e.topic_config)
    producer = Producer(
        kafka.producer_config(
            e.kafka_bootstrap_servers, settings.relay.delivery_timeout_ms, settings.relay.max_message_bytes
        )
    )
    cities = list(CITIES)
    restaurants = [
        (str(uuid.uuid4()), f"R{i}", cities[i % len(cities)], CUISINES[i % len(CUISINES)]) for i in range(400)
    ]
    start = datetime.now(UTC) - timedelta(days=2)
    statuses = ["placed", "confirmed", "preparing", "picked_up", "delivered"]
    orders = volume // len(statuses)
    print(f"volume: producing {orders * len(statuses):,} order events for {orders:,} orders ...", flush=True)
    began = time.perf_counter()
    position = 0
    for n in range(orders):
        rid, name, city, cuisine = restaurants[n % len(restaurants)]
        order_id = str(uuid.UUID(int=n + (1 << 64), version=4))
        placed = start + timedelta(seconds=n * 172800 / orders)
        for step, status in enumerate(statuses):
            position += 1
            at = placed + timedelta(minutes=8 * step)
            stamp = at.isoformat()
            payload = {
                "order_id": order_id,
                "user_id": order_id,
                "restaurant_id": rid,
                "restaurant_name": name,
                "city": city,
                "cuisine": cuisine,
                "status": status,
                "item_count": 2,
                "subtotal_cents": 2250,
                "delivery_fee_cents": 249,
                "tip_cents": 100,
                "total_cents": 2599,
                "currency": "USD",
                "payment_status": "captured",
                "cancel_reason": None,
                "delivery_lat": 52.5,
                "delivery_lon": 13.4,
                "placed_at": placed.isoformat(),
                "promised_at": None,
                "updated_at": stamp,
            }
            row = OutboxRow(
                position,
                str(uuid.uuid4()),
                "order",
                order_id,
                "OrderPlaced" if step == 0 else "OrderStatusChanged",
                json.dumps(payload),
                1,
                position,
                at,
            )
            message = codec.encode(row)
            while True:
                try:
                    producer.produce(message.topic, message.value, message.key, headers=message.headers)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)
    print(f"volume: produced in {time.perf_counter() - began:.0f} s", flush=True)


def query_latency(volume: int, runs: int) -> None:
    settings = load_settings()
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    cursor.execute("SELECT COUNT(*) FROM order_events")
    before = cursor.fetchone()[0]
    if before < volume:  # a second run reuses what the first one loaded
        load_volume(volume - before)
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        cursor.execute("SELECT COUNT(*) FROM order_events")
        if cursor.fetchone()[0] >= volume:
            break
        time.sleep(5)
    cursor.execute("SELECT COUNT(*) FROM order_events")
    print(f"volume: order_events holds {cursor.fetchone()[0]:,} events; running each query {runs} times", flush=True)
    until = datetime.now(UTC) + timedelta(hours=1)
    params = {"deliveries_within_radius": {"lat": 52.52, "lon": 13.405, "radius_m": 2000}}
    # Every synthetic order (placed over the last two days) is in the 3-day window; 24 h is the CLI's default.
    for window in (timedelta(days=3), timedelta(hours=24)):
        print(f"window: the last {window.total_seconds() / 3600:.0f} h, GMV per hour")
        for name in library():
            timings = []
            for _ in range(runs):
                began = time.perf_counter()
                run_query(cursor, name, since=until - window, until=until, grain="hour", **params.get(name, {}))
                timings.append((time.perf_counter() - began) * 1000)
            q = statistics.quantiles(timings, n=100)
            print(f"query {name:<26} p50 {q[49]:7.1f} ms   p99 {q[98]:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=90)
    parser.add_argument("--warmup", type=int, default=40, help="seconds before freshness is measured")
    parser.add_argument("--volume", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--skip-volume", action="store_true", help="freshness only")
    args = parser.parse_args()
    apply(load_settings())
    freshness(args.rate, args.seconds, args.warmup)
    if not args.skip_volume:
        query_latency(args.volume, args.runs)


if __name__ == "__main__":
    main()
