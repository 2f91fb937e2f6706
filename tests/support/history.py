"""Simulated days for the history tests and the soak: past days of Nibble traffic written in minutes, each
event stamped as having occurred at its simulated time.

The outboxes stamp `occurred_at` with the clock (`clock_timestamp()`), and the hybrid Pinot tables split
their realtime and offline parts on it. `shift_outbox_clock` lets a scratch database's outboxes add the
session setting `nibble.clock_offset` to the clock; `write_span` moves that offset along with the
generator's simulated minutes, so a day written now lands in Pinot as that day's events (as if they had
arrived at the time, minutes late at most), and Pinot's window and minion see days go by. `MinionKiller`
kills the minion in the middle of a task of a test's tables.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka.admin import AdminClient

from connectors.pinot import Controller
from pipeline.analytics.tables import TASK_TYPE, desired_specs
from pipeline.config import SERVICE_LOGINS, Settings
from pipeline.contract import catalog
from pipeline.contract.codec import Codec
from pipeline.devstack.generator import CITIES, Generator, demand
from pipeline.devstack.service_connections import ServiceConnections
from pipeline.devstack.stack import LocalStack

OUTBOXES = tuple(catalog.outboxes(catalog.load()))
SHIFTED_CLOCK = (
    "clock_timestamp() + coalesce(nullif(current_setting('nibble.clock_offset', true), ''), '0 s')::interval"
)


def shift_outbox_clock(db: str) -> None:
    """Let `nibble.clock_offset` move the outbox clock of this (scratch) database; unset, it is the clock."""
    with psycopg.connect(db, autocommit=True) as conn:
        for schema in OUTBOXES:
            conn.execute(f"ALTER TABLE {schema}.outbox ALTER COLUMN occurred_at SET DEFAULT {SHIFTED_CLOCK}")


def write_span(generator: Generator, start: datetime, end: datetime, peak_per_minute: float) -> int:
    """Orders placed minute by minute from `start` to `end` (simulated time, at `demand` times
    `peak_per_minute`), their later steps written every ten simulated minutes, one commit per simulated
    hour, as `Generator.run_history` does; before each step the outbox clock is set to that minute. Steps
    due after `end` stay scheduled (the next span writes them; orders placed last are still under way).
    Returns the orders placed."""
    at, placed, carry = start.replace(second=0, microsecond=0), 0, 0.0
    with generator.connections("nibble-history") as conn:
        if not generator.world.restaurants:
            # Enough drivers that a city's dinner peak keeps about half of them busy (as run_history).
            generator.build_world(conn, drivers_per_city=max(15, math.ceil(peak_per_minute / len(CITIES) * 80)))
            conn.commit()
        while at < end:
            if at.minute % 10 == 0:
                _clock(conn, at)
                generator.advance(conn, at)
            carry += peak_per_minute * demand(at)
            count, carry = int(carry), carry - int(carry)
            if count:
                _clock(conn, at)
                generator.place(conn, count, at)
                placed += count
            at += timedelta(minutes=1)
            if at.minute == 0:
                conn.commit()
        conn.commit()
    return placed


def finish(generator: Generator, until: datetime) -> None:
    """Write the steps due up to `until` (at the real clock: `until` is now or before)."""
    with generator.connections("nibble-history") as conn:
        _clock(conn, until)
        generator.advance(conn, until)
        conn.commit()


def _clock(conn: ServiceConnections, at: datetime) -> None:
    """Every service's outbox clock (each writes its own outbox, as its own login)."""
    offset = (at - datetime.now(UTC)).total_seconds()
    for service in SERVICE_LOGINS:
        conn.of(service).execute(f"SET nibble.clock_offset = '{offset:.3f} s'")  # a number we computed


class MinionKiller(threading.Thread):
    """Kills the Pinot minion with -9 the first time it starts a task on a table whose name begins with
    `prefix` (read from its log as it is written: mid-task, the task downloads, merges and uploads for about a
    second), then starts it again."""

    def __init__(self, stack: LocalStack, prefix: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.prefix = stack, prefix
        self.killed_in: str | None = None  # the log line of the task it killed
        self._stopping = threading.Event()
        self._log = stack.by_name["pinot-minion"].log_file
        self._offset = self._log.stat().st_size

    def run(self) -> None:
        started = f"Start executing {TASK_TYPE} on table: {self.prefix}"
        with self._log.open() as log:
            log.seek(self._offset)
            while not self._stopping.is_set():
                line = log.readline()
                if not line:
                    time.sleep(0.01)
                elif started in line:
                    self.stack.kill("pinot-minion")
                    self.killed_in = line.strip()
                    self.stack.restart("pinot-minion")
                    return

    def stop(self) -> None:
        self._stopping.set()
        self.join(60)


def drop_tables_and_topics(settings: Settings, topic_prefix: str) -> None:
    """Remove a run's own Pinot tables (both parts) and schemas (NIBBLE_PINOT_TABLE_PREFIX) and its topics."""
    controller = Controller(settings.endpoints.pinot_controller_url)
    for spec in desired_specs(settings):
        for kind in ("REALTIME", "OFFLINE"):
            if controller.table(spec.name, kind) is not None:
                controller.delete_table(spec.name, kind)
        controller.delete_schema(spec.name)
    admin = AdminClient({"bootstrap.servers": settings.endpoints.kafka_bootstrap_servers})
    for deleted in admin.delete_topics(Codec(topic_prefix).topics).values():
        deleted.result(30)  # sent and done before this process may exit
