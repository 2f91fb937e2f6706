"""Partitions managed by pg_partman (docs/migrations.md, "Partitions"): the pings by day, kept for their
retention, and the online move of an existing pings table (migration 0016), against the real PostgreSQL."""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path

import psycopg

from pipeline.migrate import migrate
from pipeline.resources import MIGRATIONS
from tests.integration.test_migrations import documented_rollbacks
from tests.support.data_keys import hold_keys
from tests.support.services import Services

PINGS = "driver_service.driver_location_pings"
PARTITIONS = """
    SELECT c.relname, pg_get_userbyid(c.relowner),
           EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'driver_service.driver_location_pings'::regclass
    ORDER BY 1
"""
# Rows that are not in the partition of their own day (the DEFAULT partition counts as wrong).
MISPLACED = """
    SELECT count(*) FROM driver_service.driver_location_pings
    WHERE tableoid::regclass::text <> 'driver_service.driver_location_pings_p' || to_char(recorded_at, 'YYYY_MM_DD')
"""


def insert_driver(conn: psycopg.Connection) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO driver_service.drivers (user_id, full_name, city, vehicle_type) "
        "VALUES (gen_random_uuid(), 'Dana', 'Berlin', 'scooter') RETURNING id"
    ).fetchone()
    assert row is not None
    return row[0]


def insert_pings(conn: psycopg.Connection, driver: uuid.UUID, ages: str) -> set[uuid.UUID]:
    """One ping per `interval` in the SQL array `ages`, recorded that long ago; returns their ids."""
    rows = conn.execute(
        f"INSERT INTO {PINGS} (driver_id, location, recorded_at) "
        "SELECT %s, 'SRID=4326;POINT(13.4 52.5)', now() - age FROM unnest(%s::interval[]) AS age RETURNING id",
        (driver, ages),
    ).fetchall()
    return {row[0] for row in rows}


def move_out_of_default(url: str) -> None:
    """docs/migrations.md's online move: pg_partman moves the DEFAULT partition's rows one day at a time."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CALL partman.partition_data_proc('{PINGS}', p_batch := 100000, p_wait := 0)")


def test_the_stack_loads_pg_partmans_worker_for_the_nibble_database(services: Services) -> None:
    with psycopg.connect(services.database_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings "
                "WHERE name IN ('shared_preload_libraries', 'pg_partman_bgw.dbname', 'pg_partman_bgw.role')"
            ).fetchall()
        )
    assert "pg_partman_bgw" in settings["shared_preload_libraries"].split(",")
    assert settings["pg_partman_bgw.dbname"] == "nibble"
    assert settings["pg_partman_bgw.role"] == "postgres"


def test_pings_go_to_their_day_and_days_past_retention_are_dropped(db: str) -> None:
    with psycopg.connect(db) as conn:
        (today,) = conn.execute("SELECT to_char(now(), 'YYYY_MM_DD')").fetchone() or ("",)
        partitions = conn.execute(PARTITIONS).fetchall()
        assert (f"driver_location_pings_p{today}", "driver_service_owner", True) in partitions
        assert ("driver_location_pings_default", "driver_service_owner", True) in partitions
        assert all(owner == "driver_service_owner" and keyed for _, owner, keyed in partitions)

        driver = insert_driver(hold_keys(conn))  # the driver's name is sealed (0023)
        expired = insert_pings(conn, driver, "{32 days}")
        kept = insert_pings(conn, driver, "{28 days, 1 minute, 0 seconds}")
        conn.commit()
        # No day partition exists yet for the old days: those pings wait in the DEFAULT partition.
        assert conn.execute(MISPLACED).fetchone() == (2,)

    move_out_of_default(db)
    with psycopg.connect(db, autocommit=True) as conn:
        assert conn.execute(MISPLACED).fetchone() == (0,)
        assert len(conn.execute(PARTITIONS).fetchall()) == len(partitions) + 2
        conn.execute("SELECT partman.run_maintenance(%s)", (PINGS,))
        left = {row[0] for row in conn.execute(f"SELECT id FROM {PINGS}")}
        names = [row[0] for row in conn.execute(PARTITIONS)]
        days = "SELECT 'driver_location_pings_p' || to_char(now() - %s::interval, 'YYYY_MM_DD')"
        (expired_day,) = conn.execute(days, ("32 days",)).fetchone() or ("",)
        (kept_day,) = conn.execute(days, ("28 days 1 minute",)).fetchone() or ("",)
    assert left == kept and not left & expired
    # By name: maintenance may also premake a day ahead as the clock moves on.
    assert expired_day not in names and kept_day in names, names


def test_0016_moves_an_existing_pings_table_while_a_writer_inserts(fresh_database: str, tmp_path: Path) -> None:
    before_0016 = tmp_path / "migrations"
    before_0016.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if int(path.name[:4]) < 16:
            shutil.copy(path, before_0016 / path.name)
    migrate(fresh_database, before_0016)
    with psycopg.connect(fresh_database) as conn:
        driver = insert_driver(conn)
        # A ping every 3 minutes over the last 3 days, today's included.
        existing = insert_pings(conn, driver, "{" + ",".join(f"{3 * i} minutes" for i in range(1440)) + "}")
        conn.commit()

    written: set[uuid.UUID] = set()
    failures: list[BaseException] = []
    stop = threading.Event()
    progress = threading.Condition()

    def writer() -> None:
        try:
            with psycopg.connect(fresh_database, autocommit=True) as conn:
                while not stop.is_set():
                    ids = insert_pings(conn, driver, "{0 seconds}")
                    with progress:
                        written.update(ids)
                        progress.notify_all()
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    def wait_for_more_writes() -> None:
        with progress:
            seen = len(written)
            assert progress.wait_for(lambda: len(written) > seen + 10 or failures, timeout=60)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for_more_writes()
        assert migrate(fresh_database) == [p.name for p in sorted(MIGRATIONS.glob("*.sql")) if p.name >= "0016"]
        wait_for_more_writes()
        move_out_of_default(fresh_database)
        wait_for_more_writes()
    finally:
        stop.set()
        thread.join()
    assert failures == []

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        ids = {row[0] for row in conn.execute(f"SELECT id FROM {PINGS}")}
        assert ids == existing | written, "every ping, old and new, is in the partitioned table once"
        assert conn.execute(MISPLACED).fetchone() == (0,)
        assert conn.execute(f"SELECT count(*) FROM {PINGS}").fetchone() == (len(ids),)

        conn.execute(documented_rollbacks()["0016_pings_partitioned_by_day"].encode())
        (relkind,) = conn.execute(f"SELECT relkind FROM pg_class WHERE oid = '{PINGS}'::regclass").fetchone() or ("",)
        assert relkind == "r", "rolled back: a plain table again"
        assert {row[0] for row in conn.execute(f"SELECT id FROM {PINGS}")} == ids
