"""A login per service and per tool (migration 0021): each service uses its own schema only, the tools only
what their job needs, and the generator writes each service's tables as that service."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from pipeline.config import SERVICE_LOGINS, TOOL_LOGINS, load_settings, login_url, password_file
from pipeline.contract import catalog
from pipeline.devstack.generator import Generator
from pipeline.outbox import dlq
from pipeline.outbox.backfill import Backfill
from tests.support.database import refused
from tests.support.service_rows import place_order, restaurant_with_dead_letters
from tests.support.services import Services

EMITTING = catalog.outboxes(catalog.load())


@pytest.fixture
def login(db: str) -> Iterator[dict[str, psycopg.Connection]]:
    """A connection of `db` per login, opened on first use."""
    opened: dict[str, psycopg.Connection] = {}

    class Logins(dict[str, psycopg.Connection]):
        def __missing__(self, role: str) -> psycopg.Connection:
            opened[role] = psycopg.connect(login_url(db, role), autocommit=True)
            return opened[role]

    yield Logins()
    for conn in opened.values():
        conn.close()


def tables(db: str, schemas: list[str]) -> list[tuple[str, str]]:
    """The tables of `schemas`, but an extension's own (PostGIS's spatial_ref_sys is everyone's to read)."""
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s) AND NOT EXISTS ("
            "    SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
            "    AND d.deptype = 'e') "
            "ORDER BY 1, 2",
            (schemas,),
        ).fetchall()


def test_each_service_is_refused_every_other_schema_and_every_audit_table(
    db: str, login: dict[str, psycopg.Connection]
) -> None:
    for service in SERVICE_LOGINS:
        conn = login[service]
        assert conn.execute("SELECT current_user").fetchone() == (service,)
        others = tables(db, [s for s in SERVICE_LOGINS if s != service] + ["audit", "partman", "public"])
        assert {schema for schema, _ in others} >= {"audit", "public"} | set(SERVICE_LOGINS) - {service}
        for schema, table in others:
            name = sql.Identifier(schema, table)
            for statement in ("SELECT 1 FROM {} LIMIT 1", "INSERT INTO {} DEFAULT VALUES", "DELETE FROM {}"):
                assert refused(conn, sql.SQL(statement).format(name)), f"{service}: {statement} {schema}.{table}"
            assert refused(conn, sql.SQL("TRUNCATE {}").format(name)), f"{service}: TRUNCATE {schema}.{table}"


def test_a_service_writes_its_own_tables_its_triggers_its_outbox_and_nothing_more(
    db: str, login: dict[str, psycopg.Connection]
) -> None:
    orders = login["order_service"]
    with orders.transaction():
        order_id = place_order(orders)
        orders.execute(
            "INSERT INTO order_items (order_id, menu_item_id, name, quantity, unit_price) "
            "VALUES (%s, gen_random_uuid(), 'Pho bo', 2, 12.50)",
            (order_id,),
        )
        orders.execute("UPDATE orders SET status = 'confirmed' WHERE id = %s", (order_id,))
    with psycopg.connect(db) as conn:
        events = conn.execute("SELECT count(*) FROM order_service.outbox WHERE aggregate_id = %s", (order_id,))
        assert events.fetchone()[0] >= 2  # OrderPlaced, OrderStatusChanged (and ledger entries)
    for statement in (
        "SELECT 1 FROM order_service.outbox",
        "DELETE FROM order_service.outbox",
        "SELECT 1 FROM order_service.outbox_dead_letter",
        "UPDATE order_service.order_status_history SET to_status = 'x'",
        "DELETE FROM order_service.order_status_history",
        "TRUNCATE order_service.orders",
        "ALTER TABLE order_service.orders ADD COLUMN x int",
        "DROP TABLE order_service.order_items",
        "CREATE TABLE order_service.mine (id int)",
    ):
        assert refused(orders, statement), statement


def test_the_tools_get_only_what_their_job_needs(db: str, login: dict[str, psycopg.Connection]) -> None:
    with psycopg.connect(db) as conn:
        restaurant_with_dead_letters(conn, [1_000_000])
    # backfill: its snapshots through the owners' functions, never an outbox or a user directly
    [progress] = Backfill(db).run(["restaurants"])
    assert progress.finished and progress.events == 1
    backfill = login["nibble_backfill"]
    assert refused(backfill, "INSERT INTO restaurant_service.outbox DEFAULT VALUES")
    assert refused(backfill, "SELECT 1 FROM user_service.users")
    assert refused(backfill, "UPDATE restaurant_service.restaurants SET name = 'x'")
    assert refused(backfill, "SELECT 1 FROM restaurant_service.outbox_dead_letter")
    # dead-letter operator: its dead letters and the outbox's INSERT, no business table
    assert len(dlq.list_dead_letters(db, EMITTING)) == 1
    assert dlq.replay(db, EMITTING, "all") == 1
    operator = login["nibble_dlq"]
    assert refused(operator, "SELECT 1 FROM restaurant_service.restaurants")
    assert refused(operator, "SELECT 1 FROM restaurant_service.outbox")
    assert refused(operator, "SELECT 1 FROM audit.changes")
    # verify: reads, never writes
    verify = login["nibble_verify"]
    assert verify.execute("SELECT count(*) FROM restaurant_service.restaurants").fetchone() == (1,)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        verify.execute("DELETE FROM public.schema_migrations")
    assert refused(verify, "SELECT 1 FROM user_service.users")
    assert refused(verify, "SELECT 1 FROM audit.changes")


def test_the_generator_writes_each_service_as_that_service(db: str) -> None:
    Generator(db, seed=4, city_suffix=f"-{uuid.uuid4().hex[:6]}").run_batch(
        30, datetime.now(UTC) - timedelta(hours=1), per_minute=15
    )
    with psycopg.connect(db) as conn:
        logins = dict(conn.execute("SELECT subject, array_agg(DISTINCT login) FROM audit.changes GROUP BY 1"))
        history = conn.execute("SELECT DISTINCT changed_by FROM order_service.order_status_history").fetchall()
    assert logins["order"] == ["order_service"]
    assert logins["payment"] == ["order_service"]
    assert logins["driver"] == ["driver_service"]
    assert history == [("nibble generate",)]


def test_the_generator_never_waits_on_its_own_connections(db: str) -> None:
    """An account ticket gives a customer a pseudonym as admin_service, in a transaction still open when an
    order of the same customer is placed as order_service (0027): the writer commits the ticket first, or the
    order would wait on it forever (here: a lock timeout)."""
    generator = Generator(db, seed=6, city_suffix=f"-{uuid.uuid4().hex[:6]}")
    with generator.connections("nibble-test-generator") as conn:
        generator.build_world(conn, drivers_per_city=2)
        conn.commit()
        conn.of("order_service").execute("SET lock_timeout = '5s'")
        conn.execute(
            "INSERT INTO admin_service.support_tickets (id, user_id, subject, description, priority) "
            "SELECT gen_random_uuid(), usr, 'Account', 'Opened by the customer', 'low' FROM unnest(%s::uuid[]) AS usr",
            (generator.world.users,),
        )
        placed = generator.place(conn, 5, datetime.now(UTC))
    with psycopg.connect(db) as check:
        ((matching,),) = check.execute(
            "SELECT count(*) FROM order_service.orders o WHERE o.id = ANY(%s) AND EXISTS (SELECT FROM "
            "admin_service.support_tickets t "
            "WHERE t.user_id = o.user_id AND t.customer_pseudonym = o.customer_pseudonym)",
            ([order.id for order in placed],),
        ).fetchall()
    assert len(placed) == 5 and matching == 5  # each order carries the pseudonym its customer's ticket made


def test_every_login_has_a_generated_password_kept_0600_and_set_on_its_role(services: Services) -> None:
    state_dir = load_settings().stack.state_dir
    with psycopg.connect(services.database_url) as conn:
        verifiers = dict(conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolcanlogin").fetchall())
    for role in SERVICE_LOGINS + TOOL_LOGINS:
        path = password_file(state_dir, role)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, role
        password = path.read_text().strip()
        assert len(password) >= 32, role
        assert verifiers[role].startswith("SCRAM-SHA-256$"), role
        url = login_url(services.database_url, role)
        assert url.startswith(f"postgresql://{role}:") and password in url  # quoted only if it must be


def test_a_login_password_given_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIBBLE_DLQ_PASSWORD", "from/the:env")
    url = login_url("postgresql://postgres:nibble@127.0.0.1:5432/nibble", "nibble_dlq")
    assert url == "postgresql://nibble_dlq:from%2Fthe%3Aenv@127.0.0.1:5432/nibble"
