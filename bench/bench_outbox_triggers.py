"""Single-row transaction throughput on the orders path, with and without the outbox triggers.

One transaction = insert an order, insert its two items (one statement), insert an authorized payment,
confirm the order: what the order service does per checkout. The outbox costs the triggers on orders in
OUTBOX_TRIGGERS (since 0019 every order event and order ledger entry is written by `orders_outbox` on an
update, `orders_outbox_insert` on an insert; 0012's `orders_announced` places an order exactly once); the
domain triggers (updated_at, totals, payment status, status history) stay on in both modes. Rounds
alternate between the modes in one scratch database, created and dropped by this script, so both see the
same cluster, cache and table sizes.

    .venv/bin/python -m bench.bench_outbox_triggers [--database-url URL] [--rounds 15] [--seconds 2]
        [--synchronous-commit off]

Many short alternating rounds and medians, because a shared machine's load drifts within a minute.
`--synchronous-commit off` takes the commit flush out of each transaction, which shows the triggers'
CPU cost on its own (a higher percentage than with durable commits).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import psycopg

from pipeline.config import load_settings
from tests.support.database import scratch_database

INSERT_ORDER = """
INSERT INTO order_service.orders (user_id, restaurant_id, restaurant_name, city, cuisine, delivery_fee, tip,
    delivery_location, promised_at)
VALUES (%s, %s, 'Pho 24', 'Berlin', 'vietnamese', 2.49, 1.00, 'SRID=4326;POINT(13.405 52.52)',
    now() + interval '35 minutes')
RETURNING id
"""
INSERT_ITEMS = """
INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price, customizations)
VALUES (%s, %s, 'Pho bo', 2, 12.50, '{"size": "large"}'), (%s, %s, 'Summer rolls', 1, 6.20, '{}')
"""
INSERT_PAYMENT = """
INSERT INTO order_service.payments (order_id, amount, method, status) VALUES (%s, 34.69, 'card', 'authorized')
"""
CONFIRM = "UPDATE order_service.orders SET status = 'confirmed' WHERE id = %s"
# 0012's guards against deleting or re-keying a published order fire on no statement measured here.
OUTBOX_TRIGGERS = ("orders_outbox", "orders_outbox_insert", "orders_announced")


def checkout(conn: psycopg.Connection) -> None:
    with conn.transaction():
        row = conn.execute(INSERT_ORDER, (uuid.uuid4(), uuid.uuid4()), prepare=True).fetchone()
        assert row is not None
        order_id = row[0]
        conn.execute(INSERT_ITEMS, (order_id, uuid.uuid4(), order_id, uuid.uuid4()), prepare=True)
        conn.execute(INSERT_PAYMENT, (order_id,), prepare=True)
        conn.execute(CONFIRM, (order_id,), prepare=True)


def run_round(conn: psycopg.Connection, seconds: float) -> float:
    """Transactions per second over `seconds` of back-to-back checkouts."""
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        checkout(conn)
        done += 1
    return done / elapsed


def set_outbox_trigger(conn: psycopg.Connection, enabled: bool) -> None:
    action = "ENABLE" if enabled else "DISABLE"
    for trigger in OUTBOX_TRIGGERS:
        conn.execute(f"ALTER TABLE order_service.orders {action} TRIGGER {trigger}")
    # The relay would drain the outbox; keep its size out of the comparison.
    conn.execute("TRUNCATE order_service.outbox")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=load_settings().endpoints.database_url, help="a superuser URL")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per mode, alternating")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], help="default: the server's setting")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured checkouts first")
    args = parser.parse_args()

    with (
        scratch_database(args.database_url, "bench_outbox", migrated=True) as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        if args.synchronous_commit:
            conn.execute(f"SET synchronous_commit = {args.synchronous_commit}")
        settings = conn.execute(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync')"
        ).fetchone()
        assert settings is not None
        print(f"PostgreSQL {settings[0]}, synchronous_commit={settings[1]}, fsync={settings[2]}")
        run_round(conn, args.warmup)
        results: dict[bool, list[float]] = {True: [], False: []}
        for round_number in range(args.rounds):
            # Alternate which mode goes first so drift (autovacuum, checkpoints) hits both alike.
            order = (True, False) if round_number % 2 == 0 else (False, True)
            for enabled in order:
                set_outbox_trigger(conn, enabled)
                results[enabled].append(run_round(conn, args.seconds))
            print(
                f"round {round_number + 1}: with {results[True][-1]:8.1f} tx/s   without {results[False][-1]:8.1f} tx/s"
            )

    with_outbox = statistics.median(results[True])
    without_outbox = statistics.median(results[False])
    ratio = with_outbox / without_outbox
    print(f"median with outbox triggers:    {with_outbox:8.1f} tx/s")
    print(f"median without outbox triggers: {without_outbox:8.1f} tx/s")
    print(f"ratio with/without: {ratio:.3f}  (outbox cost {100 * (1 - ratio):.1f}%, aim <= 10%)")


if __name__ == "__main__":
    main()
