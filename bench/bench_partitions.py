"""Removing a day of driver location pings: dropping its partition (pg_partman's retention, migration 0016)
versus the DELETE it replaces on the unpartitioned table, side by side in one run.

One scratch database (created and dropped by this script) holds both layouts with the same pings: the
partitioned `driver_service.driver_location_pings` and a copy of the table as it was before 0016 (same
columns, primary key and indexes). Days 40..40+DAYS-1 ago are loaded, each with --rows-per-day pings; then
the oldest --days-removed days are removed one at a time from each layout, alternating which goes first:
pg_partman's `drop_partition_time` (what its maintenance runs) against `DELETE ... WHERE recorded_at` in a
day, and the VACUUM that the DELETE leaves to autovacuum.

    .venv/bin/python -m bench.bench_partitions [--database-url URL] [--rows-per-day 100000] [--days 6]
        [--days-removed 3]

Medians over the days removed. A day of real pings (a row per driver every few seconds) is far larger than
the default here, which is sized for a shared 2-core machine: the DELETE grows with the rows, the drop does not.
"""

from __future__ import annotations

import statistics
import time

import psycopg

from bench import scratch
from pipeline.privacy import keys
from pipeline.privacy.sealing import use_keys

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


def main() -> None:
    parser = scratch.parser(__doc__)
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=6, help="days loaded into each layout")
    parser.add_argument("--days-removed", type=int, default=3, help="oldest days removed, one at a time")
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
