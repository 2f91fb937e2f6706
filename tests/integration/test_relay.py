"""The relay against the real PostgreSQL and Kafka: exact counts and order read back from Kafka."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
import requests

from pipeline.contract import catalog
from tests.support.polling import wait_until
from tests.support.relay_checks import (
    OUTBOXES,
    assert_complete_and_ordered,
    assert_only_a_batch_again,
    backlog,
    dead_letters,
    lane_shares,
    order_with_payload,
    orders_read_back,
    read_orders,
)
from tests.support.workload import EVENTS_PER_ORDER, ROWS_PER_ORDER, full_lifecycle, place_orders, poisoned_order


def test_events_reach_kafka_with_key_headers_and_exact_values(services, db, prefix, start_relay) -> None:
    order_ids = full_lifecycle(db, 50)
    relay = start_relay()
    wait_until(lambda: backlog(db) == 0, what="the outbox to drain")
    received = read_orders(services, prefix, 50 * EVENTS_PER_ORDER)
    counts = assert_complete_and_ordered(received, order_ids)
    assert len(received) == 50 * EVENTS_PER_ORDER and set(counts.values()) == {1}

    first = received[0]
    assert first.key == str(first.record["order_id"])
    assert first.headers["event_id"] == str(first.record["event_id"])
    # The order triggers write OrderEvent v2 since migration 0027.
    assert first.headers["schema"] == "nibble.events.OrderEvent" and first.headers["schema_version"] == "2"
    assert int(first.headers["occurred_at"]) == int(first.record["occurred_at"].timestamp() * 1000)
    assert first.headers["source_txid"] == str(first.record["source_txid"])
    delivered = [m.record for m in received if m.record["status"] == "delivered"]
    assert len(delivered) == 50
    assert {(r["item_count"], r["subtotal_cents"], r["total_cents"]) for r in delivered} == {(2, 2250, 2599)}
    assert relay.terminate() == 0


def test_a_rolled_back_transaction_publishes_nothing(services, db, prefix, start_relay) -> None:
    with psycopg.connect(db) as conn:
        place_orders(conn, 10)
        conn.rollback()
    committed = full_lifecycle(db, 1)
    start_relay()
    wait_until(lambda: backlog(db) == 0, what="the outbox to drain")
    received = read_orders(services, prefix, EVENTS_PER_ORDER)
    assert {m.key for m in received} == {str(committed[0])}
    assert len(received) == EVENTS_PER_ORDER


def test_kill_9_mid_drain_loses_nothing_and_keeps_order(services, db, prefix, start_relay) -> None:
    orders = 20_000
    order_ids = full_lifecycle(db, orders)
    rows = orders * ROWS_PER_ORDER
    batch = 2000
    relay = start_relay(relay_batch_size=str(batch))
    wait_until(lambda: backlog(db) < rows * 0.6, what="the drain to be under way")
    relay.kill()
    left = backlog(db)
    assert 0 < left < rows, "the kill must land mid-drain"
    start_relay(relay_batch_size=str(batch))
    wait_until(lambda: backlog(db) == 0, what="the restarted relay to drain")
    assert_only_a_batch_again(services, prefix, order_ids, batch)


def test_a_second_relay_takes_every_lane_when_the_first_dies(services, db, prefix, start_relay) -> None:
    first_ids = full_lifecycle(db, 100)
    first_relay = start_relay(relay_poll_interval_s="0.2")
    wait_until(lambda: backlog(db) == 0, what="the first relay to drain")
    second_relay = start_relay(relay_poll_interval_s="0.2")
    # The relays share every outbox's lanes, each one holding a fair share, without a restart.
    wait_until(lambda: lane_shares(services, db) == [[4, 4]] * OUTBOXES, timeout_s=15, what="the lanes to be shared")

    first_relay.kill()
    second_ids = full_lifecycle(db, 100)
    # The take-over is the second relay holding every lane the dead one held, then draining what came since.
    wait_until(
        lambda: lane_shares(services, db) == [[8]] * OUTBOXES, timeout_s=30, what="the second relay to hold every lane"
    )
    wait_until(lambda: backlog(db) == 0, timeout_s=30, what="the second relay to drain")
    orders_read_back(services, prefix, first_ids + second_ids)
    assert second_relay.terminate() == 0


def test_poison_event_parks_only_its_aggregate_until_replayed(services, db, prefix, start_relay) -> None:
    healthy = full_lifecycle(db, 20)
    with psycopg.connect(db) as conn:
        poisoned = poisoned_order(conn)
    relay = start_relay(relay_poll_interval_s="0.2")
    wait_until(lambda: backlog(db) == 1, what="everything but the parked event to drain")

    env = {**os.environ, **services.environ(), "NIBBLE_DATABASE_URL": db}
    listing = subprocess.run(
        [sys.executable, "-m", "pipeline", "dlq", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    dead = json.loads(listing.stdout)
    assert [(row["aggregate_id"], row["event_type"]) for row in dead] == [(str(poisoned), "OrderPlaced")]
    assert "does not fit nibble.events.OrderEvent v2" in dead[0]["error"]
    orders_read_back(services, prefix, healthy)

    # The cause is fixed (the payload corrected), then the event replayed: both events follow, in order.
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE order_service.outbox_dead_letter SET payload = jsonb_set(payload, '{item_count}', '2')")
    replay = subprocess.run(
        [sys.executable, "-m", "pipeline", "dlq", "replay", "--aggregate", str(poisoned)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "replayed 1 event(s)" in replay.stdout
    wait_until(lambda: backlog(db) == 0, what="the replayed aggregate to drain")
    received = read_orders(services, prefix, 20 * EVENTS_PER_ORDER + 2)
    mine = [m.record for m in received if m.key == str(poisoned)]
    assert [(r["event_type"], r["status"]) for r in mine] == [
        ("OrderPlaced", "placed"),
        ("OrderStatusChanged", "confirmed"),
    ]
    assert relay.terminate() == 0


def test_oversized_event_is_dead_lettered_not_sent(services, db, prefix, start_relay) -> None:
    big = order_with_payload(db, "jsonb_set(payload, '{restaurant_name}', to_jsonb(repeat('x', 5000)))")
    small = full_lifecycle(db, 3)
    start_relay(relay_max_message_bytes="2048")
    wait_until(lambda: backlog(db) == 0, what="the outbox to drain")
    [(dead, error)] = dead_letters(db)
    assert dead == big and "exceeds NIBBLE_RELAY_MAX_MESSAGE_BYTES=2048" in error
    orders_read_back(services, prefix, small)


def test_unparseable_payload_is_dead_lettered_and_the_relay_keeps_running(services, db, prefix, start_relay) -> None:
    # Valid jsonb (numeric), but no JSON parser gives a number for it: must not stop the relay.
    bad = order_with_payload(db, "jsonb_set(payload, '{total_cents}', '1e400')")
    good = full_lifecycle(db, 3)
    relay = start_relay()
    wait_until(lambda: backlog(db) == 0, what="the outbox to drain")
    [(dead, error)] = dead_letters(db)
    assert dead == bad and "payload is not parseable JSON" in error
    orders_read_back(services, prefix, good)
    assert relay.terminate() == 0


def test_kafka_unreachable_keeps_the_backlog_then_a_relay_with_kafka_drains_it(
    services, db, prefix, start_relay
) -> None:
    order_ids = full_lifecycle(db, 20)
    port = 19964 + os.getpid() % 500
    cut_off = start_relay(kafka_bootstrap_servers="127.0.0.1:1", relay_metrics_port=str(port))
    kafka_errors = 'nibble_relay_errors_total{kind="kafka"}'
    wait_until(lambda: kafka_errors in _metrics(port), timeout_s=60, what="the relay to find Kafka unreachable")
    assert cut_off.process.poll() is None, "an unreachable Kafka is waited for, not fatal"
    assert backlog(db) == 20 * ROWS_PER_ORDER
    # Stopped on request while Kafka is away: a clean exit that says so, not a hang (terminate waits for it)
    # nor a kill, and the backlog kept whole in PostgreSQL.
    assert cut_off.terminate() == 0
    messages = [line["msg"] for line in cut_off.logs()]
    assert any(msg.startswith("Kafka unavailable") for msg in messages)
    assert messages[-1] == "relay stopped", messages[-5:]
    assert backlog(db) == 20 * ROWS_PER_ORDER

    start_relay()
    wait_until(lambda: backlog(db) == 0, what="the backlog to drain once Kafka is reachable")
    assert set(orders_read_back(services, prefix, order_ids).values()) == {1}


def test_relay_reconnects_when_its_postgres_session_dies(services, db, prefix, start_relay) -> None:
    first = full_lifecycle(db, 10)
    start_relay(relay_poll_interval_s="0.2")
    wait_until(lambda: backlog(db) == 0, what="the first drain")
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'nibble-relay' AND datname = %s",
            (db.rsplit("/", 1)[1],),
        ).fetchone()[0]
    assert killed == 1
    second = full_lifecycle(db, 10)
    wait_until(lambda: backlog(db) == 0, timeout_s=30, what="the relay to reconnect and drain")
    orders_read_back(services, prefix, first + second)


def test_metrics_and_health_endpoints(services, db, prefix, start_relay) -> None:
    full_lifecycle(db, 10)
    port = 19464 + os.getpid() % 500
    start_relay(relay_metrics_port=str(port))
    wait_until(lambda: backlog(db) == 0, what="the outbox to drain")
    wait_until(lambda: _get(f"http://127.0.0.1:{port}/health") is not None, what="the health endpoint")
    health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    expected = list(dict.fromkeys(stream.outbox for stream in catalog.load().values()))
    assert health.status_code == 200 and health.json()["publishing"] == expected
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert f'nibble_relay_events_published_total{{topic="{prefix}nibble.orders"}} 50.0' in text
    assert f'nibble_relay_events_published_total{{topic="{prefix}nibble.order_ledger"}} 10.0' in text
    assert 'nibble_relay_publishing{outbox="order_service"} 1.0' in text
    assert "nibble_relay_backlog_rows" in text and "nibble_relay_batch_seconds_bucket" in text


def _metrics(port: int) -> str:
    response = _get(f"http://127.0.0.1:{port}/metrics")
    return response.text if response is not None else ""


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=2)
    except requests.RequestException:
        return None


@pytest.mark.slow
def test_kafka_outage_under_load_loses_nothing(services, db, prefix, start_relay) -> None:
    """The broker is frozen (SIGSTOP) for 30 s while orders keep coming, then resumed."""
    pid = next(row["pid"] for row in _stack_status() if row["service"] == "kafka")
    before = full_lifecycle(db, 200)
    start_relay(relay_delivery_timeout_ms="5000", relay_poll_interval_s="0.2")
    wait_until(lambda: backlog(db) == 0, what="the first drain")
    os.kill(pid, signal.SIGSTOP)
    try:
        during: list[uuid.UUID] = []
        for _ in range(10):
            during += full_lifecycle(db, 100)
            time.sleep(3)
        assert backlog(db) > 0, "with Kafka down the backlog stays in PostgreSQL"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: backlog(db) == 0, timeout_s=180, what="the backlog to drain after Kafka returned")
    expected = before + during
    orders_read_back(services, prefix, expected)


def _stack_status() -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "stack", "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(result.stdout)
