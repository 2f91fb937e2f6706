"""Partitions side by side in one run: removing a day of driver location pings by dropping its partition
(pg_partman's retention, migration 0016) versus the DELETE it replaces; and orders by month (migration 0028)
versus the unpartitioned table: checkout throughput and a one-month GMV query.

Pings: one scratch database (created and dropped by this script) holds both layouts with the same pings:
the partitioned `driver_service.driver_location_pings` and a copy of the table as it was before 0016 (same
columns, primary key and indexes). Days 40..40+DAYS-1 ago are loaded, each with --rows-per-day pings; then
the oldest --days-removed days are removed one at a time from each layout, alternating which goes first:
pg_partman's `drop_partition_time` (what its maintenance runs) against `DELETE ... WHERE recorded_at` in a
day, and the VACUUM that the DELETE leaves to autovacuum.

Orders: two scratch databases migrated to 0027 get the same history, --orders-per-month orders (an item, a
payment and a history row each, written without triggers) in each of the last --months months; one is then
migrated to 0028 (the move, timed). Rounds of bench_outbox_triggers' checkout alternate between the two
(order, two items, payment, confirmation, every trigger on); then the GMV of last month is asked of each,
alternating: unpartitioned by placed_at (its index), partitioned by created_at (pruned to one month) and
partitioned by placed_at (no pruning: every month's index).

    .venv/bin/python -m bench.bench_partitions [--database-url URL] [--only pings|orders]
        [--rows-per-day 100000] [--days 6] [--days-removed 3]
        [--orders-per-month 50000] [--months 6] [--rounds 10] [--seconds 2] [--queries 9]
        [--plan-cache-mode force_generic_plan]

`--plan-cache-mode force_generic_plan` shows what PostgreSQL 15 spends re-planning the checkout's statements
(and the foreign-key checks) against each partition (docs/migrations.md, "Orders by month").

Medians. A day of real pings (a row per driver every few seconds) is far larger than the default here,
which is sized for a shared 2-core machine: the DELETE grows with the rows, the drop does not.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from bench import scratch
from bench.bench_outbox_triggers import run_round
from pipeline.migrate import migrate
from pipeline.privacy import keys
from pipeline.privacy.sealing import use_keys
from pipeline.resources import MIGRATIONS
from tests.support.database import scratch_database

PINGS = "driver_service.driver_location_pings"
FLAT = "driver_service.pings_unpartitioned"
FIRST_DAY_AGO = 40  # past the 30 days kept, as retention would find them


def load(conn: psycopg.Connection, days: int, rows_per_day: int) -> None:
    conn.execute(f"CREATE TABLE {FLAT} (LIKE {PINGS} INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (id))")
    conn.execute(f"CREATE INDEX ON {FLAT} (driver_id, recorded_at)")
    conn.execute(f"CREATE INDEX ON {FLAT} USING gist (location)")
    use_keys(conn, keys.load())  # the driver's name is sealed (migration 0023)
    (driver,) = conn.execute(
        "INSERT INTO driver_service.drivers (user_id, full_name, city, vehicle_type) "
        "VALUES (gen_random_uuid(), 'Bench', 'Berlin', 'car') RETURNING id"
    ).fetchone() or (None,)
    starts = [f"date_trunc('day', now()) - interval '{FIRST_DAY_AGO + day} days'" for day in range(days)]
    conn.execute(f"SELECT partman.create_partition_time('{PINGS}', ARRAY[{', '.join(starts)}])")
    for start in starts:
        for table in (PINGS, FLAT):
            conn.execute(
                f"INSERT INTO {table} (driver_id, location, speed_mps, recorded_at) "
                f"SELECT %s, ST_SetSRID(ST_MakePoint(13.3 + random() / 5, 52.4 + random() / 5), 4326)::geography, "
                f"4.5, {start} + g * (interval '1 day' / %s) FROM generate_series(0, %s - 1) g",
                (driver, rows_per_day, rows_per_day),
            )
    conn.execute(f"VACUUM ANALYZE {FLAT}")
    conn.execute(f"VACUUM ANALYZE {PINGS}")


def drop_oldest_partition(conn: psycopg.Connection) -> float:
    """Seconds for pg_partman's retention to drop the oldest day partition (as if an hour past its expiry)."""
    (oldest,) = conn.execute(f"SELECT date_trunc('day', min(recorded_at)) FROM {PINGS}").fetchone() or (None,)
    started = time.perf_counter()
    conn.execute(
        "SELECT partman.drop_partition_time(%s, p_retention := '1 day', "
        "p_reference_timestamp := %s + interval '2 days 1 hour')",
        (PINGS, oldest),
    )
    return time.perf_counter() - started


def delete_oldest_day(conn: psycopg.Connection) -> tuple[float, float]:
    """Seconds for the DELETE of the oldest day, and for the VACUUM that clears what it left."""
    (oldest,) = conn.execute(f"SELECT date_trunc('day', min(recorded_at)) FROM {FLAT}").fetchone() or (None,)
    started = time.perf_counter()
    conn.execute(
        f"DELETE FROM {FLAT} WHERE recorded_at >= %s AND recorded_at < %s + interval '1 day'", (oldest, oldest)
    )
    deleted = time.perf_counter()
    conn.execute(f"VACUUM {FLAT}")
    return deleted - started, time.perf_counter() - deleted


def count(conn: psycopg.Connection, table: str) -> int:
    (rows,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
    return rows


# Orders as a database holds them, written without triggers (no events), with the totals the triggers keep.
LOAD_ORDERS = """
    INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, status, item_count,
        subtotal, delivery_fee, tip, payment_status, delivery_location, placed_at, created_at, updated_at, announced)
    SELECT gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', 'delivered', 2, 19.80, 1.99,
        1.00, 'captured', 'SRID=4326;POINT(13.405 52.52)', t, t, t, true
    FROM (SELECT date_trunc('month', now()) - %s * interval '1 month' + random() * interval '28 days' AS t
          FROM generate_series(1, %s)) s
"""
LOAD_CHILDREN = (
    "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price) "
    "SELECT id, gen_random_uuid(), 'Pho bo', 2, 9.90 FROM order_service.orders",
    "INSERT INTO order_service.payments (order_id, amount, method, status) "
    "SELECT id, total, 'card', 'captured' FROM order_service.orders",
    "INSERT INTO order_service.order_status_history (order_id, from_status, to_status) "
    "SELECT id, NULL, 'placed' FROM order_service.orders",
)
MONTH = "date_trunc('month', now()) - interval '1 month'"
GMV = {
    "unpartitioned, by placed_at": f"placed_at >= {MONTH} AND placed_at < date_trunc('month', now())",
    "partitioned, by created_at (pruned)": f"created_at >= {MONTH} AND created_at < date_trunc('month', now())",
    "partitioned, by placed_at (not pruned)": f"placed_at >= {MONTH} AND placed_at < date_trunc('month', now())",
}


def load_orders(url: str, months: int, per_month: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for month in range(1, months + 1):
            conn.execute(LOAD_ORDERS, (month, per_month))
        for statement in LOAD_CHILDREN:
            conn.execute(statement)
        conn.execute("RESET session_replication_role")
        conn.execute("VACUUM ANALYZE")


def gmv_ms(conn: psycopg.Connection, where: str) -> float:
    started = time.perf_counter()
    conn.execute(f"SELECT sum(total), count(*) FROM order_service.orders WHERE {where}").fetchone()
    return 1000 * (time.perf_counter() - started)


def bench_orders(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        before_0028 = Path(folder)
        for path in MIGRATIONS.glob("*.sql"):
            if int(path.name[:4]) < 28:
                shutil.copy(path, before_0028 / path.name)
        with (
            scratch_database(args.database_url, "bench_orders_flat") as flat,
            scratch_database(args.database_url, "bench_orders_months") as months,
        ):
            started = time.perf_counter()
            for url in (flat, months):
                migrate(url, before_0028)
                load_orders(url, args.months, args.orders_per_month)
            print(
                f"loaded {args.months} months x {args.orders_per_month:,} orders (+ an item, a payment, a history "
                f"row each) into each of two databases in {time.perf_counter() - started:.0f} s"
            )
            started = time.perf_counter()
            migrate(months)
            print(f"0028 moved {args.months * args.orders_per_month:,} orders in {time.perf_counter() - started:.1f} s")
            with psycopg.connect(flat, autocommit=True) as flat_conn, psycopg.connect(months, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                connections = {False: flat_conn, True: conn}
                if args.plan_cache_mode:
                    for each in connections.values():
                        each.execute(f"SET plan_cache_mode = {args.plan_cache_mode}")
                for each in connections.values():
                    run_round(each, args.seconds)  # warm-up
                rates: dict[bool, list[float]] = {False: [], True: []}
                for round_number in range(args.rounds):
                    order = (False, True) if round_number % 2 == 0 else (True, False)
                    for partitioned in order:
                        rate, _ = run_round(connections[partitioned], args.seconds)
                        rates[partitioned].append(rate)
                    print(
                        f"round {round_number + 1}: unpartitioned {rates[False][-1]:7.1f} tx/s   "
                        f"partitioned {rates[True][-1]:7.1f} tx/s"
                    )
                flat_rate, month_rate = statistics.median(rates[False]), statistics.median(rates[True])
                print(
                    f"median checkouts: unpartitioned {flat_rate:.1f} tx/s, partitioned {month_rate:.1f} tx/s, "
                    f"ratio {month_rate / flat_rate:.3f} (aim >= 0.95)"
                )

                where = dict(zip(GMV, (flat_conn, conn, conn), strict=True))
                times: dict[str, list[float]] = {name: [] for name in GMV}
                for query in range(args.queries + 1):
                    names = list(GMV) if query % 2 == 0 else list(reversed(GMV))
                    for name in names:
                        elapsed = gmv_ms(where[name], GMV[name])
                        if query:  # the first pass warms the caches
                            times[name].append(elapsed)
                print(f"GMV of last month (1 of {args.months} months), median of {args.queries}:")
                for name, samples in times.items():
                    print(f"  {name:40s} {statistics.median(samples):8.1f} ms")


def bench_pings(args: argparse.Namespace) -> None:
    with scratch.scratch_connection(args.database_url, "bench_partitions") as conn:
        started = time.perf_counter()
        load(conn, args.days, args.rows_per_day)
        print(
            f"loaded {args.days} days x {args.rows_per_day:,} pings into each layout in "
            f"{time.perf_counter() - started:.0f} s"
        )
        drops: list[float] = []
        deletes: list[float] = []
        vacuums: list[float] = []
        for day in range(args.days_removed):
            partitioned_first = day % 2 == 0  # alternate, so drift on a shared machine hits both alike
            if partitioned_first:
                drops.append(drop_oldest_partition(conn))
            delete, vacuum = delete_oldest_day(conn)
            deletes.append(delete)
            vacuums.append(vacuum)
            if not partitioned_first:
                drops.append(drop_oldest_partition(conn))
            print(
                f"day {day + 1}: drop partition {1000 * drops[-1]:8.1f} ms   DELETE {1000 * delete:8.1f} ms "
                f"(+ VACUUM {1000 * vacuum:8.1f} ms)"
            )
        assert count(conn, PINGS) == count(conn, FLAT) == (args.days - args.days_removed) * args.rows_per_day

    drop, delete, vacuum = (1000 * statistics.median(samples) for samples in (drops, deletes, vacuums))
    print(f"median over {args.days_removed} days of {args.rows_per_day:,} pings each:")
    print(f"  drop the day's partition (pg_partman retention): {drop:10.1f} ms")
    print(f"  DELETE the day's rows (unpartitioned):           {delete:10.1f} ms  (+ VACUUM {vacuum:.1f} ms)")
    print(f"  DELETE / drop: {delete / drop:.0f}x")


def main() -> None:
    parser = scratch.parser(__doc__)
    parser.add_argument("--only", choices=["pings", "orders"], help="default: both")
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=6, help="days loaded into each layout")
    parser.add_argument("--days-removed", type=int, default=3, help="oldest days removed, one at a time")
    parser.add_argument("--orders-per-month", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=6, help="months of orders loaded before the move")
    parser.add_argument("--rounds", type=int, default=10, help="checkout rounds per layout, alternating")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--queries", type=int, default=9, help="GMV queries per layout, alternating")
    parser.add_argument(
        "--plan-cache-mode",
        choices=["auto", "force_generic_plan", "force_custom_plan"],
        help="for the checkouts of both layouts; default: the server's",
    )
    args = parser.parse_args()
    if args.only != "orders":
        bench_pings(args)
    if args.only != "pings":
        bench_orders(args)


if __name__ == "__main__":
    main()
