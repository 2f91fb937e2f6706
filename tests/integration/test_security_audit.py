"""Audit with user context (migration 0022): critical changes recorded with the actor of their transaction,
in an append-only table no service, owner or tool can change."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pipeline.analytics.rebuild import record_run
from pipeline.config import SERVICE_LOGINS, login_url
from pipeline.contract import catalog
from pipeline.outbox import dlq
from pipeline.outbox.backfill import Backfill
from tests.support.data_keys import hold_keys
from tests.support.service_rows import place_order, restaurant_with_dead_letters

EMITTING = catalog.outboxes(catalog.load())


@pytest.fixture
def service(db: str) -> Iterator[dict[str, psycopg.Connection]]:
    """One connection per service login, not in autocommit: each test's transaction sets its actor."""
    conns = {name: psycopg.connect(login_url(db, name)) for name in SERVICE_LOGINS}
    hold_keys(conns["driver_service"]).commit()
    yield conns
    for conn in conns.values():
        conn.close()


def audit(db: str, subject: str) -> list[tuple[str, str, str, str | None, str | None]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT actor, login, action, old_value, new_value FROM audit.changes WHERE subject = %s ORDER BY id",
            (subject,),
        ).fetchall()


def act_as(conn: psycopg.Connection, actor: str) -> None:
    """`SET LOCAL nibble.actor = …`, as a service does per request (set_config takes it as a parameter)."""
    conn.execute("SELECT set_config('nibble.actor', %s, true)", (actor,))


def test_audit_rows_name_the_actor_of_each_transaction(db: str, service: dict[str, psycopg.Connection]) -> None:
    orders = service["order_service"]
    act_as(orders, "user:alice")
    order_id = place_order(orders)
    orders.execute(
        "INSERT INTO payments (order_id, amount, method, status) VALUES (%s, 20, 'card', 'authorized')", (order_id,)
    )
    orders.commit()
    act_as(orders, "agent:support-7")
    orders.execute("UPDATE orders SET status = 'cancelled', cancel_reason = 'customer' WHERE id = %s", (order_id,))
    orders.execute("UPDATE payments SET status = 'refunded', refunded_at = now() WHERE order_id = %s", (order_id,))
    orders.commit()
    # no actor named: the login is the actor
    drivers = service["driver_service"]
    drivers.execute(
        "INSERT INTO drivers (user_id, full_name, city, vehicle_type) "
        "VALUES (gen_random_uuid(), 'Dana', 'Berlin', 'car')"
    )
    drivers.commit()
    act_as(drivers, "driver:dana")
    drivers.execute("UPDATE drivers SET status = 'available'")
    drivers.commit()
    tickets = service["admin_service"]
    act_as(tickets, "agent:support-7")
    tickets.execute(
        "INSERT INTO support_tickets (user_id, subject, description) VALUES (gen_random_uuid(), 'Refund', 'Where?')"
    )
    tickets.execute("UPDATE support_tickets SET status = 'resolved'")
    tickets.commit()

    assert audit(db, "order") == [
        ("user:alice", "order_service", "status", None, "placed"),
        ("agent:support-7", "order_service", "status", "placed", "cancelled"),
    ]
    assert audit(db, "payment") == [
        ("user:alice", "order_service", "status", None, "authorized"),
        ("agent:support-7", "order_service", "status", "authorized", "refunded"),
    ]
    assert audit(db, "driver") == [
        ("driver_service", "driver_service", "status", None, "offline"),
        ("driver:dana", "driver_service", "status", "offline", "available"),
    ]
    assert audit(db, "ticket") == [
        ("agent:support-7", "admin_service", "status", None, "open"),
        ("agent:support-7", "admin_service", "status", "open", "resolved"),
    ]
    with psycopg.connect(db) as conn:
        history = conn.execute(
            "SELECT to_status, changed_by FROM order_service.order_status_history WHERE order_id = %s "
            "ORDER BY changed_at",
            (order_id,),
        ).fetchall()
    assert history == [("placed", "user:alice"), ("cancelled", "agent:support-7")]


def test_no_service_owner_or_superuser_can_change_an_audit_row(db: str, service: dict[str, psycopg.Connection]) -> None:
    drivers = service["driver_service"]
    drivers.execute(
        "INSERT INTO drivers (user_id, full_name, city, vehicle_type) "
        "VALUES (gen_random_uuid(), 'Dana', 'Berlin', 'car')"
    )
    drivers.commit()
    statements = [
        "UPDATE audit.changes SET actor = 'someone else'",
        "DELETE FROM audit.changes",
        "TRUNCATE audit.changes",
        "INSERT INTO audit.changes (actor, subject, subject_id, action) VALUES ('x', 'order', 'x', 'status')",
    ]
    for conn in service.values():
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    with psycopg.connect(db) as conn:
        for role in ("nibble_audit_owner", "postgres", "order_service_owner"):
            for statement in statements[:3]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute(f"SET LOCAL ROLE {role}")
                    conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit.changes").fetchone() == (1,)


def test_dead_letter_replay_and_discard_backfill_and_rebuild_runs_name_the_actor(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIBBLE_ACTOR", "ops:carol")
    with psycopg.connect(db) as conn:
        restaurant_with_dead_letters(conn, [1_000_000, 1_000_001])
    assert dlq.replay(db, EMITTING, "position", 1_000_000) == 1
    assert dlq.discard(db, EMITTING, "position", 1_000_001) == 1
    Backfill(db).run(["restaurants"])
    record_run(db, "restaurants", "kafka")
    assert [row[:3] for row in audit(db, "dead_letter")] == [
        ("ops:carol", "nibble_dlq", "replay"),
        ("ops:carol", "nibble_dlq", "discard"),
    ]
    assert [row[:3] for row in audit(db, "backfill")] == [
        ("ops:carol", "nibble_backfill", "started"),
        ("ops:carol", "nibble_backfill", "finished"),
    ]
    assert [row[:3] for row in audit(db, "rebuild")] == [("ops:carol", "nibble_backfill", "started")]
