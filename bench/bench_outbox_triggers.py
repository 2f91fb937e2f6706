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
CPU cost on its own (a higher percentage than with durable commits). With PostgreSQL on this machine, the
benchmark session's backend CPU per checkout is printed too (from /proc/<pid>/schedstat): on a busy
machine throughput follows the load, the CPU a checkout costs much less so.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

import psycopg

from bench import scratch

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


def run_round(conn: psycopg.Connection, seconds: float, schedstat: Path | None = None) -> tuple[float, float | None]:
    """Transactions per second over `seconds` of back-to-back checkouts, and the backend's CPU microseconds
    per checkout when its schedstat file is given."""
    cpu_before = backend_cpu_ns(schedstat)
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        checkout(conn)
        done += 1
    cpu_after = backend_cpu_ns(schedstat)
    cpu_us = (cpu_after - cpu_before) / 1000 / done if cpu_before is not None and cpu_after is not None else None
    return done / elapsed, cpu_us


def backend_cpu_ns(schedstat: Path | None) -> int | None:
    """Nanoseconds the backend has run on a CPU (the first field of /proc/<pid>/schedstat)."""
    return int(schedstat.read_text().split()[0]) if schedstat is not None else None


def set_outbox_trigger(conn: psycopg.Connection, enabled: bool) -> None:
    action = "ENABLE" if enabled else "DISABLE"
    for trigger in OUTBOX_TRIGGERS:
        conn.execute(f"ALTER TABLE order_service.orders {action} TRIGGER {trigger}")
    # The relay would drain the outbox; keep its size out of the comparison.
    conn.execute("TRUNCATE order_service.outbox")


def main() -> None:
    parser = scratch.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="rounds per mode, alternating")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], help="default: the server's setting")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured checkouts first")
    args = parser.parse_args()

    with scratch.scratch_connection(args.database_url, "bench_outbox") as conn:
        if args.synchronous_commit:
            conn.execute(f"SET synchronous_commit = {args.synchronous_commit}")
        settings = conn.execute(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync')"
        ).fetchone()
        assert settings is not None
        print(f"PostgreSQL {settings[0]}, synchronous_commit={settings[1]}, fsync={settings[2]}")
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        schedstat: Path | None = Path(f"/proc/{backend[0]}/schedstat")
        if not schedstat.exists():  # PostgreSQL on another machine (or in another PID namespace)
            schedstat = None
        run_round(conn, args.warmup)
        results: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for round_number in range(args.rounds):
            # Alternate which mode goes first so drift (autovacuum, checkpoints) hits both alike.
            order = (True, False) if round_number % 2 == 0 else (False, True)
            for enabled in order:
                set_outbox_trigger(conn, enabled)
                rate, cpu_us = run_round(conn, args.seconds, schedstat)
                results[enabled].append(rate)
                if cpu_us is not None:
                    cpu[enabled].append(cpu_us)
            print(
                f"round {round_number + 1}: with {results[True][-1]:8.1f} tx/s   without {results[False][-1]:8.1f} tx/s"
                + (
                    f"   backend CPU/checkout with {cpu[True][-1]:6.0f} us  without {cpu[False][-1]:6.0f} us"
                    if schedstat
                    else ""
                )
            )

    with_outbox = statistics.median(results[True])
    without_outbox = statistics.median(results[False])
    ratio = with_outbox / without_outbox
    print(f"median with outbox triggers:    {with_outbox:8.1f} tx/s")
    print(f"median without outbox triggers: {without_outbox:8.1f} tx/s")
    print(f"ratio with/without: {ratio:.3f}  (outbox cost {100 * (1 - ratio):.1f}%, aim <= 10%)")
    if cpu[True]:
        cpu_with, cpu_without = statistics.median(cpu[True]), statistics.median(cpu[False])
        print(
            f"median backend CPU per checkout: with {cpu_with:.0f} us, without {cpu_without:.0f} us "
            f"(the triggers: {cpu_with - cpu_without:.0f} us, {100 * (1 - cpu_without / cpu_with):.1f}% of it)"
        )


if __name__ == "__main__":
    main()
