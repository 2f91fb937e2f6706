"""Several relays sharing the outboxes' lanes, against the real PostgreSQL and Kafka: kill -9 of one
mid-drain, a relay joining, a poison event inside a shared lane, a lane-count switch under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from pipeline.outbox.store import OutboxStore
from tests.support.polling import wait_until
from tests.support.relay_checks import (
    OUTBOXES,
    assert_complete_and_ordered,
    assert_only_a_batch_again,
    backlog,
    lane_shares,
    orders_read_back,
    read_orders,
)
from tests.support.services import Services
from tests.support.workload import EVENTS_PER_ORDER, ROWS_PER_ORDER, full_lifecycle, poisoned_order


def child_pids(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("relays", [2, 3])
def test_relays_share_the_lanes_and_a_kill_9_loses_nothing(services, db, prefix, start_relay, relays: int) -> None:
    orders = 10_000
    rows = orders * ROWS_PER_ORDER
    batch = 500
    running = [start_relay(relay_batch_size=str(batch)) for _ in range(relays)]
    # Before the kill every relay publishes: 8 lanes split 4/4 or 3/3/2.
    expected_shares = sorted([8 // relays + (1 if i < 8 % relays else 0) for i in range(relays)])
    wait_until(lambda: lane_shares(services, db)[0] == expected_shares, timeout_s=30, what="the lanes to be shared")
    # Paused (sessions and leases kept) while the backlog is written, so the drain starts only when it is whole.
    for relay in running:
        os.kill(relay.process.pid, signal.SIGSTOP)
    order_ids = full_lifecycle(db, orders)
    for relay in running:
        os.kill(relay.process.pid, signal.SIGCONT)
    # Polled every 0.2 s, the relays drain up to ~7,000 events between two looks: kill at the first look
    # that sees the drain started, with most of the backlog still waiting.
    wait_until(lambda: backlog(db) < rows * 0.95, what="the drain to be under way")
    running[0].kill()
    assert 0 < backlog(db) < rows, "the kill must land mid-drain"
    wait_until(lambda: backlog(db) == 0, what="the survivors to take the dead relay's lanes and drain")
    assert_only_a_batch_again(services, prefix, order_ids, batch)  # the killed relay's batch in flight
    assert all(relay.terminate() == 0 for relay in running[1:])


def test_a_new_relay_takes_a_fair_share_without_a_restart(services, db, prefix, start_relay) -> None:
    first = start_relay(relay_poll_interval_s="0.2")
    wait_until(lambda: lane_shares(services, db) == [[8]] * OUTBOXES, timeout_s=30, what="one relay to hold every lane")
    start_relay(relay_poll_interval_s="0.2")
    wait_until(
        lambda: lane_shares(services, db) == [[4, 4]] * OUTBOXES, timeout_s=30, what="a fair share for the second"
    )
    start_relay(relay_poll_interval_s="0.2")
    wait_until(
        lambda: lane_shares(services, db) == [[2, 3, 3]] * OUTBOXES, timeout_s=30, what="a fair share for the third"
    )
    order_ids = full_lifecycle(db, 300)
    wait_until(lambda: backlog(db) == 0, what="three relays to drain")
    assert set(orders_read_back(services, prefix, order_ids).values()) == {1}
    assert first.terminate() == 0


def test_a_poison_event_parks_only_its_aggregate_and_its_lane_flows(services, db, prefix, start_relay) -> None:
    with psycopg.connect(db) as conn:
        poisoned = poisoned_order(conn)
    healthy = full_lifecycle(db, 80)
    store = OutboxStore("order_service")
    with psycopg.connect(db) as conn:
        lane = store.lane_of(conn, str(poisoned), 8)
        neighbours = [order for order in healthy if store.lane_of(conn, str(order), 8) == lane]
    assert neighbours, "some healthy order shares the poisoned order's lane"
    start_relay(relay_poll_interval_s="0.2")
    start_relay(relay_poll_interval_s="0.2")
    wait_until(lambda: backlog(db) == 1, what="everything but the parked event to drain")
    with psycopg.connect(db) as conn:
        parked = conn.execute("SELECT aggregate_id, event_type FROM order_service.outbox").fetchall()
        dead = conn.execute("SELECT aggregate_id, event_type FROM order_service.outbox_dead_letter").fetchall()
    assert parked == [(poisoned, "OrderStatusChanged")] and dead == [(poisoned, "OrderPlaced")]
    received = read_orders(services, prefix, 80 * EVENTS_PER_ORDER)
    assert_complete_and_ordered(received, healthy)  # the poisoned order's lane neighbours among them
    assert {str(order) for order in neighbours} <= {m.key for m in received}


def switch_to_three_lanes(services: Services, database_url: str) -> subprocess.CompletedProcess[str]:
    """`nibble relay lanes --set 3` on the order outbox, connected as `database_url`."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "relay", "lanes", "--outbox", "order_service", "--set", "3"],
        env={**os.environ, **services.environ(), "NIBBLE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_lane_count_switch_under_load_keeps_per_aggregate_order(services, db, prefix, start_relay) -> None:
    relays = [start_relay(relay_batch_size="500", relay_poll_interval_s="0.2") for _ in range(2)]
    wait_until(lambda: lane_shares(services, db)[0] == [4, 4], timeout_s=30, what="the lanes to be shared")
    written: list[uuid.UUID] = []
    writer = threading.Thread(target=lambda: [written.extend(full_lifecycle(db, 500)) for _ in range(8)])
    writer.start()
    wait_until(lambda: len(written) >= 1000, what="the writer to be under way")
    switch = switch_to_three_lanes(services, db)  # the owner changes the count
    assert switch.returncode == 0, switch.stderr
    assert switch.stdout.strip() == "order_service: 8 -> 3 lanes; relays rejoin within a second"
    writer.join()
    wait_until(lambda: backlog(db) == 0, what="the drain under the new lane count")
    wait_until(lambda: lane_shares(services, db)[0] == [1, 2], timeout_s=30, what="both relays back on 3 lanes")
    assert set(orders_read_back(services, prefix, written).values()) == {
        1
    }  # relays left between batches: nothing was sent twice
    assert all(relay.terminate() == 0 for relay in relays)


def test_the_relay_role_cannot_switch_the_lane_count(services, db) -> None:
    switch = switch_to_three_lanes(services, services.relay_url_for(db.rsplit("/", 1)[1]))
    assert switch.returncode == 1
    assert switch.stderr.strip().splitlines() == [
        "nibble relay: permission denied for table outbox_lanes: run it as the database owner"
    ]


def test_processes_share_the_lanes_and_sigterm_stops_them_all(services, db, prefix, start_relay) -> None:
    relay = start_relay(processes=2, relay_poll_interval_s="0.2")
    wait_until(
        lambda: lane_shares(services, db) == [[4, 4]] * OUTBOXES, timeout_s=30, what="two processes sharing lanes"
    )
    children = child_pids(relay.process.pid)
    assert len(children) == 2
    order_ids = full_lifecycle(db, 200)
    wait_until(lambda: backlog(db) == 0, what="the two processes to drain")
    assert set(orders_read_back(services, prefix, order_ids).values()) == {1}
    assert relay.terminate() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def test_relay_processes_stop_when_their_supervisor_is_killed(services, db, start_relay) -> None:
    relay = start_relay(processes=2)
    wait_until(
        lambda: lane_shares(services, db) == [[4, 4]] * OUTBOXES, timeout_s=30, what="two processes sharing lanes"
    )
    children = child_pids(relay.process.pid)
    relay.kill()
    wait_until(lambda: lane_shares(services, db) == [[]] * OUTBOXES, timeout_s=30, what="the orphans to stop")
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), timeout_s=30, what="exit")
