"""The outbox under churn: the relay's claim time, the table's and its indexes' size, and autovacuum, as the
count of rows inserted, published and deleted grows, with the outbox's storage parameters as migrated and
with others, side by side in one run.

Each configuration gets a scratch database of its own (every migration applied; created and dropped by this
script) and churns `order_service.outbox` the way the relay does at full speed: a steady backlog of
--backlog rows; each step inserts --batch rows (an order-sized jsonb payload each), claims a batch with the
relay's own claim (OutboxStore.claim_batch: all 8 lanes, position order) and deletes what it claimed
(OutboxStore.delete_published). At 0 deleted rows (a fresh outbox) and at each checkpoint it times --claims
claims in a row (read only: the backlog stays as it is), counts the outbox pages one claim reads (EXPLAIN
BUFFERS: its work on the queue, steady under a shared machine's load where times are not) and reads the
table's statistics: heap and index sizes, dead tuples, autovacuum runs. Autovacuum runs as the server is
configured (the stack: a 10 s naptime).

    .venv/bin/python -m bench.bench_outbox_churn [--database-url URL] [--deleted 1000000] [--checkpoints 4]
        [--backlog 20000] [--batch 5000] [--claims 100] [--storage 'autovacuum_vacuum_cost_delay=2' ...]

Each --storage value is one more configuration: `ALTER TABLE order_service.outbox SET (...)` on top of the
migrations' (0008, 0017). Sizes are modest for a shared 2-core machine: say so next to any figure quoted.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from bench import scratch, stats
from connectors.postgres import sql_file
from pipeline.outbox.store import OutboxStore
from tests.support.database import scratch_database

OUTBOX = OutboxStore("order_service")
LANE_COUNT = 8
LANES = list(range(LANE_COUNT))
# Order-sized payloads (the shape of order_service.order_payload, ~600 bytes), one aggregate per row.
INSERT_EVENTS = """
INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
SELECT 'order', gen_random_uuid(), 'OrderUpdated', jsonb_build_object(
    'id', gen_random_uuid(), 'user_id', gen_random_uuid(), 'restaurant_id', gen_random_uuid(),
    'restaurant_name', 'Pho 24', 'city', 'Berlin', 'cuisine', 'vietnamese', 'status', 'confirmed',
    'item_count', 3, 'subtotal', 31.20, 'delivery_fee', 2.49, 'tip', 1.00, 'currency', 'EUR',
    'payment_status', 'authorized', 'cancel_reason', NULL, 'delivery_lat', 52.52, 'delivery_lon', 13.405,
    'placed_at', now(), 'promised_at', now() + interval '35 minutes', 'updated_at', now()), 1
FROM generate_series(1, %s)
"""
CLAIM = sql_file("pipeline.outbox", "claim_batch", schema=sql.Identifier("order_service"))
TABLE_STATE = """
SELECT pg_relation_size('order_service.outbox'), pg_indexes_size('order_service.outbox'),
       s.n_live_tup, s.n_dead_tup, s.autovacuum_count, s.vacuum_count
FROM pg_stat_user_tables s WHERE s.relid = 'order_service.outbox'::regclass
"""


@dataclass(frozen=True)
class Checkpoint:
    deleted: int
    claim_ms: list[float]
    claim_pages: int
    heap_bytes: int
    index_bytes: int
    live: int
    dead: int
    autovacuums: int


def time_claims(conn: psycopg.Connection, count: int, batch: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        claimed = OUTBOX.claim_batch(conn, batch, LANE_COUNT, LANES)
        samples.append(1000 * (time.perf_counter() - started))
        assert len(claimed) == batch
    return samples


def claim_pages(conn: psycopg.Connection, batch: int) -> int:
    """Pages of the outbox (heap and position index; shared buffers hit or read) one claim reads: its work on
    the queue, whatever the machine's load, and apart from the dead-letter check, whose plan varies."""
    with conn.transaction():
        conn.execute(sql_file("pipeline.outbox", "claim_plan"))
        explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + CLAIM
        (plan,) = conn.execute(explain, {"limit": batch, "lane_count": LANE_COUNT, "lanes": LANES}).fetchone() or ([],)
    nodes, pages = [plan[0]["Plan"]], 0
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "outbox":
            pages += node["Shared Hit Blocks"] + node["Shared Read Blocks"]
        nodes.extend(node.get("Plans", []))
    return pages


def checkpoint(conn: psycopg.Connection, deleted: int, args: argparse.Namespace) -> Checkpoint:
    claims = time_claims(conn, args.claims, args.batch)
    pages = claim_pages(conn, args.batch)
    # Statistics reach pg_stat_user_tables from other backends (autovacuum) with a delay; ours are flushed.
    conn.execute("SELECT pg_stat_force_next_flush()")
    heap, index, live, dead, autovacuums, _ = conn.execute(TABLE_STATE).fetchone() or (0,) * 6
    return Checkpoint(deleted, claims, pages, heap, index, live, dead, autovacuums)


def churn(url: str, storage: str | None, args: argparse.Namespace) -> list[Checkpoint]:
    """The checkpoints of one configuration, fresh first."""
    with psycopg.connect(url, autocommit=True) as conn:
        if storage:
            conn.execute(f"ALTER TABLE order_service.outbox SET ({storage})")
        conn.execute(INSERT_EVENTS, (args.backlog,))
        conn.execute("VACUUM ANALYZE order_service.outbox")
        results = [checkpoint(conn, 0, args)]
        deleted = 0
        every = args.deleted // args.checkpoints
        started = time.perf_counter()
        while deleted < args.deleted:
            conn.execute(INSERT_EVENTS, (args.batch,))
            claimed = OUTBOX.claim_batch(conn, args.batch, LANE_COUNT, LANES)
            OUTBOX.delete_published(conn, [row.position for row in claimed])
            deleted += len(claimed)
            if deleted // every > (deleted - len(claimed)) // every:
                results.append(checkpoint(conn, deleted, args))
                rate = deleted / (time.perf_counter() - started)
                print(f"  {deleted:>12,} deleted ({rate:,.0f} rows/s of churn): {describe(results[-1])}")
        return results


def describe(point: Checkpoint) -> str:
    mib = 2**20
    return (
        f"claim {stats.describe(point.claim_ms, 'ms', 1)}, {point.claim_pages:,} pages; "
        f"heap {point.heap_bytes / mib:.1f} MiB, indexes {point.index_bytes / mib:.1f} MiB, "
        f"{point.live:,} live / {point.dead:,} dead tuples, {point.autovacuums} autovacuums"
    )


def main() -> None:
    parser = scratch.parser(__doc__)
    parser.add_argument("--deleted", type=int, default=1_000_000, help="rows churned through per configuration")
    parser.add_argument("--checkpoints", type=int, default=4, help="measurements after the fresh one")
    parser.add_argument("--backlog", type=int, default=20_000, help="rows waiting in the outbox throughout")
    parser.add_argument("--batch", type=int, default=5_000, help="the relay's batch (NIBBLE_RELAY_BATCH_SIZE)")
    parser.add_argument("--claims", type=int, default=100, help="claims timed at each checkpoint")
    parser.add_argument("--storage", action="append", default=[], help="storage parameters of one more run")
    args = parser.parse_args()

    configurations: dict[str, list[Checkpoint]] = {}
    for storage in [None, *args.storage]:
        name = storage or "as migrated"
        print(f"{name}:")
        with scratch_database(args.database_url, "bench_churn", migrated=True) as url:
            configurations[name] = churn(url, storage, args)

    print(
        f"\nclaim p50 / p99 in ms ({args.batch:,}-row claims over a {args.backlog:,}-row backlog, "
        f"{args.claims} claims per cell); p99 against the fresh outbox's; pages one claim touches:"
    )
    for name, points in configurations.items():
        fresh = stats.percentile(points[0].claim_ms, 99)
        cells = []
        for point in points:
            p99 = stats.percentile(point.claim_ms, 99)
            ratio = f" ({p99 / fresh:.2f}x)" if p99 and fresh else ""
            cells.append(
                f"{point.deleted:,} deleted: {stats.cell(point.claim_ms, 50, 1)} / {stats.cell(point.claim_ms, 99, 1)}"
                f"{ratio}, {point.claim_pages:,} pages"
            )
        print(f"  {name}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
