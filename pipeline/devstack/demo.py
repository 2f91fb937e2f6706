"""The demo (`nibble demo`): the pipeline end to end on the local stack, with a live summary read from Pinot.

Stack up, migrations and the schemas registered, Pinot tables, the relay daemon, a week of history (so the
dashboards have shape the first time they open), the Superset dashboards, then live traffic; every few seconds
the summary (orders per minute, GMV, delivery p90, freshness) is read back from Pinot. Stops the relay and the
traffic it started; the stack and the dashboards keep running.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from connectors import postgres
from connectors.pinot import broker_connection
from connectors.registry import Registry
from pipeline.analytics import dashboards, tables
from pipeline.config import Settings
from pipeline.contract.codec import Codec
from pipeline.contract.subjects import apply_subjects
from pipeline.devstack import superset
from pipeline.devstack.stack import LocalStack
from pipeline.errors import NibbleError
from pipeline.migrate import migrate
from pipeline.resources import DASHBOARDS

SUMMARY_SQL = {
    "orders_last_minute": "SELECT COUNT(*) FROM orders WHERE placed_at >= %(minute_ago)s",
    "gmv": "SELECT SUM(total_cents), COUNT(*) FROM orders WHERE placed_at >= %(since)s AND status <> 'cancelled'",
    "p90": "SELECT PERCENTILETDIGEST(delivered_at - created_at, 90) FROM deliveries "
    "WHERE status = 'delivered' AND delivered_at >= %(day_ago)s",
    "newest": "SELECT MAX(occurred_at) FROM order_events",
}


def _step(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def summary(cursor: object, since_ms: int) -> list[str]:
    now_ms = int(time.time() * 1000)
    params = {"since": since_ms, "minute_ago": now_ms - 60_000, "day_ago": now_ms - 86_400_000}
    values = {}
    for name, sql in SUMMARY_SQL.items():
        cursor.execute(sql, params)  # type: ignore[attr-defined]
        values[name] = cursor.fetchone()  # type: ignore[attr-defined]
    gmv_cents, orders = values["gmv"]
    p90_ms = _finite(values["p90"][0])
    newest = _finite(values["newest"][0])
    freshness = f"{(now_ms - newest) / 1000:>9.1f}s" if newest else "        -"
    return [
        f"orders placed in the last minute  {values['orders_last_minute'][0]:>10}",
        f"GMV since the demo started        {(_finite(gmv_cents) or 0) / 100:>10.2f}  ({orders} orders)",
        f"delivery time p90, last 24 h (min){(p90_ms or 0) / 60_000:>10.1f}",
        f"freshness (now - newest event)    {freshness}",
    ]


def _finite(value: object) -> float | None:
    """Pinot answers an aggregate over no rows with -Infinity or NaN (as text through pinotdb)."""
    number = float(value) if value is not None else math.nan  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _has_history(database_url: str) -> bool:
    """Whether the demo's database already holds orders placed more than a day ago (an earlier demo's)."""
    with postgres.connect(database_url, "nibble-demo") as conn:
        row = conn.execute("SELECT 1 FROM order_service.orders WHERE placed_at < now() - interval '1 day' LIMIT 1")
        return row.fetchone() is not None


def run_demo(settings: Settings, rate: float, duration_s: float, history: str) -> int:
    _step("1/7 bringing up the local stack (PostgreSQL, Kafka, Pinot, the schema registry, Redis, Superset)")
    LocalStack(settings, report=lambda line: _step(f"     {line}")).up()
    _step("2/7 applying migrations and registering the Avro schemas")
    applied = migrate(settings.endpoints.database_url)
    _step(f"     {len(applied)} migration(s) applied")
    registry = Registry(settings.endpoints.schema_registry_url)
    for change in apply_subjects(registry, Codec(settings.endpoints.topic_prefix)):
        _step(f"     {change}")
    _step("3/7 applying Pinot tables")
    for change in tables.apply(settings):
        _step(f"     {change}")
    env = {**os.environ, "NIBBLE_DATABASE_URL": settings.endpoints.database_url}
    log_path = settings.stack.state_dir / "logs" / "relay.log"
    _step(f"4/7 starting the relay (log: {log_path})")
    with log_path.open("ab") as log:
        relay = subprocess.Popen([sys.executable, "-m", "pipeline", "relay"], env=env, stderr=log)
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    try:
        if _has_history(settings.endpoints.database_url):
            _step("5/7 history: the database already holds past days (an earlier demo); not writing them again")
        else:
            _step(f"5/7 writing the last {history} of activity (lunch and dinner peaks, weekends)")
            command = [sys.executable, "-m", "pipeline", "generate", "--history", history]
            if subprocess.run(command, env=env, check=False).returncode != 0:
                raise NibbleError("writing the history failed; see the generator's error above")
        _step("6/7 applying the Superset dashboards (dashboards/)")
        login = superset.login(settings)
        for change in dashboards.apply(settings, dashboards.connect(login), DASHBOARDS):
            _step(f"     {change}")
        _step(f"     open {login.url}/dashboard/list/ and log in as {login.user} / {login.password}")
    except BaseException:
        relay.send_signal(signal.SIGTERM)
        relay.wait(60)
        raise
    started_ms = int(time.time() * 1000)
    _step(f"7/7 generating about {rate:.0f} events/s of live traffic for {duration_s:.0f} s")
    generator = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "generate", "--rate", str(rate), "--duration", str(duration_s)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    clear = "\033[H\033[J" if sys.stdout.isatty() else ""
    try:
        while generator.poll() is None:
            time.sleep(3)
            lines = summary(cursor, started_ms)
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            print(f"{clear}Nibble live, from Pinot ({stamp} UTC, relay pid {relay.pid})\n  " + "\n  ".join(lines))
    finally:
        if generator.poll() is None:
            generator.terminate()
        relay.send_signal(signal.SIGTERM)
        relay.wait(60)
    if generator.returncode:
        print(
            f"[demo] the traffic generator failed (exit {generator.returncode}); see its error above", file=sys.stderr
        )
        return 1
    print(
        f"\nThe stack keeps running. Dashboards (refreshing every minute): {login.url}/dashboard/list/ "
        f"(login {login.user} / {login.password}).\nQuery further with, for example:\n"
        "  .venv/bin/nibble query gmv_by_city --grain hour\n"
        "  .venv/bin/nibble query delivery_time_percentiles --format csv\n"
        "  .venv/bin/nibble query --help            (every query and what it answers)\n"
        "  python: from pinotdb import connect; connect(host='127.0.0.1', port=8099, path='/query/sql')\n"
        "Stop everything with: .venv/bin/nibble stack down"
    )
    return 0
