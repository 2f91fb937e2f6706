"""`nibble backfill` against the real PostgreSQL: snapshot payloads are the triggers' own, a run killed with
kill -9 resumes after its last chunk, a second run does nothing, and a row a writer holds is waited for and
snapshotted as that writer committed it, after the writer's own event."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pipeline.devstack.generator import Generator
from pipeline.errors import UsageError
from pipeline.outbox.backfill import TABLES, Backfill, BackfillBusy
from tests.support.polling import wait_until

OUTBOXES = ("order_service", "driver_service", "restaurant_service")
SNAPSHOT_OF = {
    "order": "OrderSnapshot",
    "delivery": "DeliverySnapshot",
    "driver": "DriverSnapshot",
    "restaurant": "RestaurantSnapshot",
}


def _empty_outboxes(db: str) -> None:
    with psycopg.connect(db) as conn:
        for schema in OUTBOXES:
            conn.execute(f"DELETE FROM {schema}.outbox")


def _outbox(db: str, where: str = "true") -> list[tuple[Any, ...]]:
    """(aggregate_type, aggregate_id, event_type, payload, position) of every outbox row."""
    with psycopg.connect(db) as conn:
        return [
            row
            for schema in OUTBOXES
            for row in conn.execute(
                f"SELECT aggregate_type, aggregate_id, event_type, payload, position FROM {schema}.outbox "
                f"WHERE {where} ORDER BY position"
            )
        ]


@pytest.fixture
def world(db: str) -> str:
    """A few hundred orders played to their end, with deliveries, restaurants and drivers."""
    Generator(db, seed=11, city_suffix="-bf").run_batch(300, datetime.now(UTC) - timedelta(hours=2), per_minute=60)
    return db


def test_a_snapshot_carries_what_the_trigger_last_wrote(world: str) -> None:
    last_written = {
        (kind, key): payload for kind, key, _, payload, _ in _outbox(world, "aggregate_type <> 'order_ledger'")
    }
    _empty_outboxes(world)

    Backfill(world).run([])

    # The ledger has counted every order (the triggers did): the snapshots come without ledger entries.
    snapshots = _outbox(world)
    assert {event for _, _, event, _, _ in snapshots} == set(SNAPSHOT_OF.values())
    assert all(event == SNAPSHOT_OF[kind] for kind, _, event, _, _ in snapshots)
    assert {(kind, key) for kind, key, _, _, _ in snapshots} == set(last_written)
    for kind, key, _, payload, _ in snapshots:
        # a driver's location update moves updated_at without an event: the snapshot has the newer one
        assert {**payload, "updated_at": None} == {**last_written[kind, key], "updated_at": None}


def test_orders_that_never_had_items_get_no_snapshot(world: str) -> None:
    with psycopg.connect(world) as conn:
        conn.execute(
            "INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, "
            "delivery_location) VALUES (gen_random_uuid(), gen_random_uuid(), 'Empty', 'Nowhere', 'thai', "
            "'SRID=4326;POINT(13.4 52.5)')"
        )
        orders = conn.execute("SELECT count(*) FROM order_service.orders").fetchone()[0]
    _empty_outboxes(world)
    [progress] = Backfill(world).run(["orders"])
    assert progress.rows_done == orders and progress.events == orders - 1


def test_a_second_run_does_nothing_unless_restarted(world: str) -> None:
    _empty_outboxes(world)
    first = Backfill(world).run(["restaurants", "drivers"])
    assert all(p.finished and p.events > 0 for p in first)
    events = len(_outbox(world))

    again = Backfill(world).run(["restaurants", "drivers"])
    assert all(p.already_done_at is not None for p in again) and len(_outbox(world)) == events

    Backfill(world).run(["restaurants"], restart=True)
    assert len(_outbox(world)) == events + first[0].events


def test_a_run_killed_with_sigkill_resumes_after_its_last_committed_chunk(world: str) -> None:
    _empty_outboxes(world)
    env = {**os.environ, "NIBBLE_DATABASE_URL": world}
    command = [sys.executable, "-m", "pipeline", "backfill", "orders", "--batch", "20", "--max-rate", "200"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)

    def done() -> int:
        with psycopg.connect(world) as conn:
            row = conn.execute("SELECT rows_done FROM backfill_progress WHERE table_name = 'orders'").fetchone()
        return row[0] if row else 0

    wait_until(lambda: done() >= 100, 30, what="the backfill to be under way")
    first.kill()
    first.wait()
    # Each chunk commits its events with its progress: none lost, none ahead of the record.
    with psycopg.connect(world) as conn:
        rows_done, events = conn.execute(
            "SELECT rows_done, events FROM backfill_progress WHERE table_name = 'orders'"
        ).fetchone()
    assert 100 <= rows_done < 300
    assert len(_outbox(world, "event_type = 'OrderSnapshot'")) == events

    subprocess.run([*command[:-2], "--max-rate", "100000"], env=env, check=True, stdout=subprocess.DEVNULL)
    snapshots = [key for _, key, _, _, _ in _outbox(world, "event_type = 'OrderSnapshot'")]
    assert len(snapshots) == len(set(snapshots)) == 300, "every order once: the restart repeats nothing"


def test_a_row_held_by_a_writer_is_snapshotted_as_the_writer_committed_it(world: str) -> None:
    _empty_outboxes(world)
    with psycopg.connect(world) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM order_service.orders ORDER BY id")]
    held = ids[len(ids) // 2]
    writer = psycopg.connect(world)
    writer.execute("UPDATE order_service.orders SET tip = tip + 5 WHERE id = %s", (held,))  # not committed yet

    backfill = threading.Thread(target=lambda: Backfill(world, batch=50).run(["orders"]))
    backfill.start()

    def stalled_before_the_held_row() -> bool:
        with psycopg.connect(world) as conn:
            row = conn.execute("SELECT last_id FROM backfill_progress WHERE table_name = 'orders'").fetchone()
        return row is not None and row[0] == ids[len(ids) // 2 - 1]

    wait_until(stalled_before_the_held_row, 30, what="the backfill to reach the row the writer holds")
    time.sleep(0.5)
    assert backfill.is_alive(), "it waits for the writer rather than skip the row"
    writer.commit()
    writer.close()
    backfill.join(30)

    [changed, snapshot] = _outbox(world, f"aggregate_type = 'order' AND aggregate_id = '{held}'")
    assert (changed[2], snapshot[2]) == ("OrderUpdated", "OrderSnapshot")
    assert snapshot[4] > changed[4] and snapshot[3] == changed[3], "newest state at the highest position"
    assert len(_outbox(world, "event_type = 'OrderSnapshot'")) == 300


def test_since_covers_rows_updated_since_only(world: str) -> None:
    cut = datetime.now(UTC)
    with psycopg.connect(world) as conn:
        conn.execute(
            "UPDATE order_service.orders SET tip = tip + 1 WHERE id IN "
            "(SELECT id FROM order_service.orders ORDER BY id LIMIT 7)"
        )
    _empty_outboxes(world)
    [progress] = Backfill(world).run(["orders"], since=cut)
    assert progress.events == 7
    with pytest.raises(UsageError, match="--since"):
        with psycopg.connect(world) as conn:
            conn.execute("UPDATE backfill_progress SET finished_at = NULL")
        Backfill(world).run(["orders"])


def test_bad_input_and_a_busy_database_fail_clearly(world: str) -> None:
    with pytest.raises(UsageError, match="unknown table menus"):
        Backfill(world).run(["menus"])
    with pytest.raises(UsageError):
        Backfill(world, batch=0)
    with psycopg.connect(world) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (0x6E626B66,))
        with pytest.raises(BackfillBusy):
            Backfill(world).run(list(TABLES))
