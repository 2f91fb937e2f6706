"""Least privilege: service owner roles, and a relay role limited to the outbox tables."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pipeline.contract import catalog
from tests.support.data_keys import hold_keys
from tests.support.database import refused

SERVICES = ["user_service", "restaurant_service", "order_service", "driver_service", "admin_service"]
EMITTING = catalog.outboxes(catalog.load())
OUTBOX_TABLES = {"outbox", "outbox_dead_letter"}


@pytest.fixture(autouse=True)
def two_drivers(db: str) -> None:
    """Business rows (and their outbox events) for the relay role to be refused on or to read."""
    with psycopg.connect(db) as conn:
        hold_keys(conn).execute(
            "INSERT INTO driver_service.drivers (user_id, full_name, city, vehicle_type) "
            "VALUES (gen_random_uuid(), 'Dana', 'Berlin', 'car'), (gen_random_uuid(), 'Eli', 'Berlin', 'car')"
        )


@pytest.fixture
def relay(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(make_conninfo(db, user="nibble_relay", password="nibble_relay")) as conn:
        yield conn


def business_tables(db: str) -> list[tuple[str, str]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s) ORDER BY 1, 2",
            (SERVICES,),
        ).fetchall()
    return [(schema, table) for schema, table in rows if table not in OUTBOX_TABLES]


def test_relay_is_refused_on_every_business_table(db: str, relay: psycopg.Connection) -> None:
    tables = business_tables(db)
    assert len(tables) >= 15
    for schema, table in tables:
        name = sql.Identifier(schema, table)
        assert refused(relay, sql.SQL("SELECT 1 FROM {} LIMIT 1").format(name)), f"SELECT {schema}.{table}"
        assert refused(relay, sql.SQL("DELETE FROM {}").format(name)), f"DELETE {schema}.{table}"
    assert refused(relay, "SELECT 1 FROM public.schema_migrations")
    assert refused(relay, "UPDATE driver_service.drivers SET status = 'busy'")


def test_relay_cannot_write_or_create(relay: psycopg.Connection) -> None:
    assert refused(relay, "UPDATE driver_service.outbox SET event_type = 'x'")
    assert refused(
        relay,
        "INSERT INTO driver_service.outbox (aggregate_type, aggregate_id, event_type, payload, "
        "schema_version) VALUES ('driver', gen_random_uuid(), 'x', '{}', 1)",
    )
    assert refused(relay, "UPDATE driver_service.outbox_dead_letter SET error = 'x'")
    assert refused(relay, "CREATE TABLE public.relay_scratch (id int)")
    assert refused(relay, "CREATE TABLE driver_service.relay_scratch (id int)")
    assert refused(relay, "TRUNCATE driver_service.outbox")


def test_relay_reads_deletes_and_dead_letters_outbox_rows(relay: psycopg.Connection) -> None:
    rows = relay.execute("SELECT position, event_type FROM driver_service.outbox ORDER BY position").fetchall()
    assert [event for _, event in rows] == ["DriverRegistered", "DriverRegistered"]
    for schema in EMITTING:
        relay.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "outbox")))
        relay.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "outbox_dead_letter")))

    poison, good = rows[0][0], rows[1][0]
    relay.execute(
        """
        WITH moved AS (DELETE FROM driver_service.outbox WHERE position = %s RETURNING *)
        INSERT INTO driver_service.outbox_dead_letter (position, event_id, aggregate_type, aggregate_id,
            event_type, payload, schema_version, txid, occurred_at, error)
        SELECT position, event_id, aggregate_type, aggregate_id, event_type, payload, schema_version, txid,
            occurred_at, 'schema mismatch'
        FROM moved
        """,
        (poison,),
    )
    relay.execute("DELETE FROM driver_service.outbox WHERE position = %s", (good,))
    relay.commit()

    assert relay.execute("SELECT count(*) FROM driver_service.outbox").fetchone() == (0,)
    parked = relay.execute("SELECT position, error FROM driver_service.outbox_dead_letter").fetchall()
    assert parked == [(poison, "schema mismatch")]
    relay.execute("DELETE FROM driver_service.outbox_dead_letter")
    relay.commit()


def test_relay_role_has_no_other_powers(db: str) -> None:
    with psycopg.connect(db) as conn:
        role = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = 'nibble_relay'"
        ).fetchone()
        memberships = conn.execute(
            "SELECT count(*) FROM pg_auth_members WHERE member = 'nibble_relay'::regrole"
        ).fetchone()
        grants = conn.execute(
            """
            SELECT table_schema, table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)
            FROM information_schema.role_table_grants
            WHERE grantee = 'nibble_relay'
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).fetchall()
    assert role == (True, False, False, False, False, False)
    assert memberships == (0,)
    outboxes = [
        row
        for schema in EMITTING
        for row in [
            (schema, "outbox", "DELETE,SELECT"),
            (schema, "outbox_dead_letter", "DELETE,INSERT,SELECT"),
        ]
    ]
    # The lane count per outbox (migration 0013) is read by every relay; only the owner changes it.
    assert grants == sorted([*outboxes, ("public", "outbox_lanes", "SELECT")])


def test_each_service_schema_and_its_tables_belong_to_a_nologin_owner(db: str) -> None:
    with psycopg.connect(db) as conn:
        owners = conn.execute(
            """
            SELECT n.nspname, pg_get_userbyid(n.nspowner), r.rolcanlogin,
                   array_agg(DISTINCT pg_get_userbyid(c.relowner))
            FROM pg_namespace n
            JOIN pg_roles r ON r.oid = n.nspowner
            JOIN pg_class c ON c.relnamespace = n.oid
            WHERE n.nspname = ANY(%s)
            GROUP BY 1, 2, 3 ORDER BY 1
            """,
            (SERVICES,),
        ).fetchall()
    assert owners == [(schema, f"{schema}_owner", False, [f"{schema}_owner"]) for schema in sorted(SERVICES)]
