"""Orders partitioned by month of created_at (migration 0028, docs/migrations.md "Orders by month"): where rows
land, the key that never changes, the item and payment triggers pruning to one partition, the two-column
foreign keys, the triggers and grants of the old table, and the move of a database that holds orders (with a
writer running, and a few hundred thousand rows timed) and its documented rollback, against the real
PostgreSQL."""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline.migrate import migrate
from pipeline.resources import MIGRATIONS
from tests.integration.test_migrations import documented_rollbacks

ORDERS = "order_service.orders"
CHILDREN = ("order_items", "payments", "order_status_history")
POINT = "SRID=4326;POINT(13.4 52.5)"
ORDER = (
    "INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, delivery_location) "
    "VALUES (gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', %s) RETURNING id"
)
ORDER_CREATED = (
    "INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, delivery_location, "
    "created_at) VALUES (gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', %s, "
    "now() + %s::interval) RETURNING id"
)
ITEM = (
    "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price) "
    "VALUES (%s, gen_random_uuid(), 'Pho bo', 1, 9.90)"
)
PAYMENT = "INSERT INTO order_service.payments (order_id, amount, method, status) VALUES (%s, 9.90, 'card', %s)"
PARTITION_OF = "SELECT tableoid::regclass::text FROM order_service.orders WHERE id = %s"
# Each order's row as text (columns in the same order in both layouts), hashed and summed: equal sums and
# counts mean the same rows.
FINGERPRINT = """
    SELECT count(*), sum(('x' || substr(md5(o::text), 1, 15))::bit(60)::bigint) FROM order_service.orders o
"""
CHILD_FINGERPRINT = """
    SELECT count(*), sum(('x' || substr(md5((c.id, c.order_id)::text), 1, 15))::bit(60)::bigint)
    FROM order_service.{} c
"""
# Orders, their items, payments and first history rows written as a database holds them, fast: without
# triggers (no events: the outbox starts empty), with the totals the triggers would have kept.
BULK_ORDERS = """
    INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, status, item_count,
        subtotal, delivery_fee, tip, payment_status, delivery_location, placed_at, created_at, updated_at, announced)
    SELECT gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', 'delivered', 2, 19.80, 1.99,
        1.00, 'captured', %s, t, t, t, true
    FROM (SELECT now() - (g %% 120) * interval '1 day' - g * interval '1 second' AS t
          FROM generate_series(1, %s) g) s
"""
BULK_CHILDREN = [
    "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price) "
    "SELECT id, gen_random_uuid(), 'Pho bo', 2, 9.90 FROM order_service.orders",
    "INSERT INTO order_service.payments (order_id, amount, method, status) "
    "SELECT id, total, 'card', 'captured' FROM order_service.orders",
    "INSERT INTO order_service.order_status_history (order_id, from_status, to_status) "
    "SELECT id, NULL, 'placed' FROM order_service.orders",
]
MOVED_ORDERS = 300_000


def one(conn: psycopg.Connection[Any], statement: str, *params: Any) -> Any:
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return row[0]


def migrations_before_0028(tmp_path: Path) -> Path:
    directory = tmp_path / "before_0028"
    directory.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if int(path.name[:4]) < 28:
            shutil.copy(path, directory / path.name)
    return directory


def month_partition(conn: psycopg.Connection[Any], offset: str = "0 days") -> str:
    return one(conn, "SELECT 'order_service.orders_p' || to_char(now() + %s::interval, 'YYYY_MM')", offset)


def scanned_partitions(notices: list[str], statement: str) -> list[str]:
    """The order partitions the plan of `statement` (logged by auto_explain) read; pruned ones say "never
    executed"."""
    (plan,) = [notice for notice in notices if statement in notice]
    return re.findall(r"Scan(?: using \w+)? on (orders_\w+) \w+ .*\(actual rows", plan)


def test_orders_land_in_their_month_and_a_month_without_partition_in_default(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        now = one(conn, ORDER, POINT)
        ahead = one(conn, ORDER_CREATED, POINT, "2 months")
        past = one(conn, ORDER_CREATED, POINT, "-3 months")  # before the first month pg_partman made
        far = one(conn, ORDER_CREATED, POINT, "2 years")  # beyond the 4 months made ahead
        assert one(conn, PARTITION_OF, now) == month_partition(conn)
        assert one(conn, PARTITION_OF, ahead) == month_partition(conn, "2 months")
        assert one(conn, PARTITION_OF, past) == one(conn, PARTITION_OF, far) == "order_service.orders_default"
        for order in (now, past, far):  # an order in DEFAULT takes items and payments like any other
            conn.execute(ITEM, (order,))
            conn.execute(PAYMENT, (order, "authorized"))
        assert one(conn, "SELECT count(*) FROM order_service.orders WHERE item_count = 1") == 3


def test_the_partition_key_never_changes(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        order = one(conn, ORDER, POINT)
        conn.execute(ITEM, (order,))
        with pytest.raises(psycopg.errors.RestrictViolation) as raised:
            conn.execute(
                "UPDATE order_service.orders SET created_at = created_at - interval '40 days' WHERE id = %s", (order,)
            )
        assert str(raised.value).splitlines()[0] == (
            f"order_service.orders: created_at of order {order} cannot change: "
            "it files the order in its month's partition"
        )
        # placed_at stays a payload column like any other: the order stays put, its events as before.
        before = one(conn, "SELECT max(position) FROM order_service.outbox")
        conn.execute(
            "UPDATE order_service.orders SET placed_at = placed_at - interval '40 days' WHERE id = %s", (order,)
        )
        events = conn.execute(
            "SELECT event_type, payload->>'orders' FROM order_service.outbox WHERE position > %s ORDER BY position",
            (before,),
        ).fetchall()
        assert events == [("OrderLedgerEntry", "-1"), ("OrderLedgerEntry", "1"), ("OrderUpdated", None)]
        assert one(conn, PARTITION_OF, order) == month_partition(conn)


def test_an_item_or_payment_updates_its_order_in_one_partition(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        order = one(conn, ORDER, POINT)
        for offset in ("1 month", "2 months", "-3 months"):  # rows in other partitions, DEFAULT included
            conn.execute(ITEM, (one(conn, ORDER_CREATED, POINT, offset),))
        notices: list[str] = []
        conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting, value in (
            ("log_min_duration", "0"),
            ("log_nested_statements", "on"),
            ("log_analyze", "on"),
            ("log_timing", "off"),
            ("log_level", "notice"),
        ):
            conn.execute(f"SET auto_explain.{setting} = '{value}'")
        conn.execute(ITEM, (order,))
        conn.execute(PAYMENT, (order, "authorized"))
        conn.execute("RESET auto_explain.log_min_duration")
        partition = month_partition(conn).removeprefix("order_service.")
    assert scanned_partitions(notices, "SET item_count = o.item_count + d.quantity") == [partition]
    assert scanned_partitions(notices, "SET payment_status = p.status") == [partition]


def test_the_children_carry_the_key_and_the_foreign_keys_hold(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        order = one(conn, ORDER_CREATED, POINT, "-3 months")
        conn.execute(ITEM, (order,))
        conn.execute(PAYMENT, (order, "authorized"))
        conn.execute("UPDATE order_service.orders SET status = 'confirmed' WHERE id = %s", (order,))
        for child in CHILDREN:
            keys = conn.execute(
                f"SELECT DISTINCT c.order_created_at = o.created_at FROM order_service.{child} c "
                "JOIN order_service.orders o ON o.id = c.order_id WHERE o.id = %s",
                (order,),
            ).fetchall()
            assert keys == [(True,)], child
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(ITEM, (uuid.uuid4(),))
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO order_service.payments (order_id, order_created_at, amount, method, status) "
                "VALUES (%s, now(), 1, 'card', 'failed')",
                (order,),
            )
        unannounced = one(conn, ORDER, POINT)  # never visible, so deletable, but its payment holds it
        conn.execute(PAYMENT, (unannounced, "failed"))
        conn.execute("DELETE FROM order_service.order_status_history WHERE order_id = %s", (unannounced,))
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("DELETE FROM order_service.orders WHERE id = %s", (unannounced,))


def test_retention_detaches_a_month_into_the_archive_but_never_one_whose_orders_have_children(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "SELECT partman.create_partition_time(%s, ARRAY[date_trunc('month', now() - interval '5 months'), "
            "date_trunc('month', now() - interval '4 months')])",
            (ORDERS,),
        )
        conn.execute("SET session_replication_role = replica")  # an order without even a history row
        alone = one(conn, ORDER_CREATED, POINT, "-5 months")
        conn.execute("RESET session_replication_role")
        conn.execute(ITEM, (one(conn, ORDER_CREATED, POINT, "-4 months"),))
        orders = one(conn, "SELECT count(*) FROM order_service.orders")
        detached = "order_service_archive." + month_partition(conn, "-5 months").removeprefix("order_service.")
        held = month_partition(conn, "-4 months")

        set_retention = "UPDATE partman.part_config SET retention = %s WHERE parent_table = %s"
        conn.execute(set_retention, ("4 months", ORDERS))
        conn.execute("SELECT partman.run_maintenance(%s)", (ORDERS,))
        assert one(conn, f"SELECT id FROM {detached}") == alone, "detached into the archive, its row kept"
        assert one(conn, "SELECT count(*) FROM order_service.orders") == orders - 1

        conn.execute(set_retention, ("3 months", ORDERS))
        # pg_partman re-raises PostgreSQL's refusal as its own error, naming the foreign key
        with pytest.raises(psycopg.errors.RaiseException, match="violates foreign key constraint"):
            conn.execute("SELECT partman.run_maintenance(%s)", (ORDERS,))
        assert one(conn, "SELECT count(*) FROM pg_inherits WHERE inhrelid = %s::regclass", held) == 1
        assert one(conn, "SELECT count(*) FROM order_service.orders") == orders - 1


def triggers_and_grants(url: str) -> tuple[set[str], list[str], set[tuple[str, tuple[str, ...]]]]:
    with psycopg.connect(url) as conn:
        triggers = {
            row[0]
            for row in conn.execute(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                (ORDERS,),
            )
        }
        table = one(conn, "SELECT relacl FROM pg_class WHERE oid = %s::regclass", ORDERS)
        columns = {
            (name, tuple(sorted(acl)))
            for name, acl in conn.execute(
                "SELECT attname, attacl FROM pg_attribute WHERE attrelid = %s::regclass AND attacl IS NOT NULL",
                (ORDERS,),
            )
        }
    return triggers, sorted(table), columns


def test_the_new_table_has_the_old_ones_triggers_and_grants_on_every_partition(
    db: str, fresh_database: str, tmp_path: Path
) -> None:
    migrate(fresh_database, migrations_before_0028(tmp_path))
    old_triggers, old_grants, old_column_grants = triggers_and_grants(fresh_database)
    triggers, grants, column_grants = triggers_and_grants(db)
    added = {
        "CREATE TRIGGER orders_refuse_new_created_at BEFORE UPDATE OF created_at ON order_service.orders "
        "FOR EACH ROW WHEN ((new.created_at IS DISTINCT FROM old.created_at)) "
        "EXECUTE FUNCTION order_service.refuse_new_created_at()"
    }
    assert triggers == old_triggers | added
    assert (grants, column_grants) == (old_grants, old_column_grants)
    with psycopg.connect(db) as conn:
        conn.execute("SELECT partman.run_maintenance(%s)", (ORDERS,))
        # Row triggers are cloned onto each partition (statement triggers fire on the parent), and each
        # partition belongs to the schema's owner with the parent's grants.
        partitions = conn.execute(
            "SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner), c.relacl, "
            "       (SELECT count(*) FROM pg_trigger t "
            "        WHERE t.tgrelid = c.oid AND t.tgparentid <> 0 AND NOT t.tgisinternal) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (ORDERS,),
        ).fetchall()
        row_triggers = one(
            conn,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
            "AND tgtype & 1 = 1",  # TRIGGER_TYPE_ROW
            ORDERS,
        )
    assert len(partitions) >= 6  # this month, 4 ahead, DEFAULT
    for name, owner, acl, cloned in partitions:
        assert (owner, sorted(acl), cloned) == ("order_service_owner", grants, row_triggers), name


def fill(conn: psycopg.Connection[Any], orders: int) -> None:
    """`orders` orders over the last 120 days with an item, a payment and a history row each, plus two far
    ahead (written without triggers: no events)."""
    conn.execute("SET session_replication_role = replica")
    conn.execute(BULK_ORDERS, (POINT, orders))
    conn.execute(
        "INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, delivery_location,"
        " created_at) SELECT gen_random_uuid(), gen_random_uuid(), 'Pho 24', 'Berlin', 'vietnamese', %s, "
        "now() + interval '2 years' FROM generate_series(1, 2)",
        (POINT,),
    )
    for statement in BULK_CHILDREN:
        conn.execute(statement)
    conn.execute("RESET session_replication_role")
    conn.execute("ANALYZE")


def fingerprints(conn: psycopg.Connection[Any]) -> list[Any]:
    return [
        tuple(conn.execute(FINGERPRINT).fetchone() or ()),
        *(tuple(conn.execute(CHILD_FINGERPRINT.format(child)).fetchone() or ()) for child in CHILDREN),
    ]


def test_the_move_of_a_few_hundred_thousand_orders_loses_none_writes_no_event_and_rolls_back(
    fresh_database: str, tmp_path: Path
) -> None:
    migrate(fresh_database, migrations_before_0028(tmp_path))
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        started = time.perf_counter()
        fill(conn, MOVED_ORDERS)
        print(
            f"\n{MOVED_ORDERS:,} orders (+ an item, a payment, a history row each) written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        before = fingerprints(conn)
        assert one(conn, "SELECT count(*) FROM order_service.outbox") == 0

    started = time.perf_counter()
    assert migrate(fresh_database) == ["0028_orders_partitioned_by_month.sql"]
    print(
        f"0028 moved {MOVED_ORDERS:,} orders (one transaction, the order tables locked) in "
        f"{time.perf_counter() - started:.1f} s"
    )

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        assert fingerprints(conn) == before
        assert one(conn, "SELECT count(*) FROM order_service.outbox") == 0, "the move wrote no event"
        assert one(conn, "SELECT count(*) FROM order_service.orders_default") == 2
        misplaced = (
            "SELECT count(*) FROM order_service.orders WHERE created_at < now() + interval '1 year' "
            "AND tableoid::regclass::text <> 'order_service.orders_p' || to_char(created_at, 'YYYY_MM')"
        )
        assert one(conn, misplaced) == 0
        for child in CHILDREN:
            unmatched = (
                f"SELECT count(*) FROM order_service.{child} c LEFT JOIN order_service.orders o "
                "ON (o.id, o.created_at) = (c.order_id, c.order_created_at) WHERE o.id IS NULL"
            )
            assert one(conn, unmatched) == 0, child
        # Later changes emit what they did before: cancelling a moved order retracts its ledger state, adds
        # the cancelled one and publishes the cancellation.
        moved = one(conn, "SELECT id FROM order_service.orders WHERE announced LIMIT 1")
        conn.execute("UPDATE order_service.orders SET status = 'cancelled' WHERE id = %s", (moved,))
        events = conn.execute("SELECT event_type, payload->>'cancelled' FROM order_service.outbox ORDER BY position")
        assert events.fetchall() == [("OrderLedgerEntry", "0"), ("OrderLedgerEntry", "1"), ("OrderCancelled", None)]
        conn.execute("DELETE FROM order_service.outbox")
        before = fingerprints(conn)

        started = time.perf_counter()
        conn.execute(documented_rollbacks()["0028_orders_partitioned_by_month"].encode())
        print(f"the rollback moved them back in {time.perf_counter() - started:.1f} s")
        assert one(conn, "SELECT relkind FROM pg_class WHERE oid = %s::regclass", ORDERS) == "r"
        assert fingerprints(conn) == before
        assert one(conn, "SELECT count(*) FROM order_service.outbox") == 0, "the rollback wrote no event"
        foreign_keys = conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE confrelid = %s::regclass ORDER BY 1",
            (ORDERS,),
        ).fetchall()
        assert foreign_keys == [
            (f"order_service.{child}", "FOREIGN KEY (order_id) REFERENCES order_service.orders(id)")
            for child in sorted(CHILDREN)
        ]
    assert migrate(fresh_database) == ["0028_orders_partitioned_by_month.sql"], "and it applies again"


def test_the_move_with_a_writer_placing_orders_loses_no_order_and_no_event(fresh_database: str, tmp_path: Path) -> None:
    migrate(fresh_database, migrations_before_0028(tmp_path))
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        fill(conn, 20_000)
        existing = one(conn, "SELECT count(*) FROM order_service.orders")

    placed: list[Any] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    progress = threading.Condition()

    def writer() -> None:
        try:
            with psycopg.connect(fresh_database) as conn:
                while not stop.is_set():
                    with conn.transaction():  # an order, then its item: OrderPlaced and its ledger entry
                        order = one(conn, ORDER, POINT)
                        conn.execute(ITEM, (order,))
                    with progress:
                        placed.append(order)
                        progress.notify_all()
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    def wait_for_more_orders() -> None:
        with progress:
            seen = len(placed)
            assert progress.wait_for(lambda: len(placed) > seen + 10 or failures, timeout=60)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for_more_orders()
        assert migrate(fresh_database) == ["0028_orders_partitioned_by_month.sql"]
        wait_for_more_orders()
    finally:
        stop.set()
        thread.join()
    assert failures == []

    with psycopg.connect(fresh_database) as conn:
        assert one(conn, "SELECT count(*) FROM order_service.orders") == existing + len(placed)
        events = conn.execute(
            "SELECT aggregate_id, array_agg(event_type ORDER BY position) FROM order_service.outbox GROUP BY 1"
        ).fetchall()
    assert {order for order, _ in events} == set(placed), "events only for the writer's orders"
    assert {tuple(types) for _, types in events} == {("OrderLedgerEntry", "OrderPlaced")}
