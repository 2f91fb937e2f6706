"""Rebuild one Pinot table (`nibble pinot rebuild TABLE`): drop it, create it again from its checked-in
config, refill it, and compare it with PostgreSQL.

Refill. A new realtime table reads its topic from the earliest offset. The topics are compacted by
aggregate (docs/operations.md), so while no record was ever deleted from a topic (every partition still
starts at offset 0) it holds the newest event of every aggregate and Kafka alone refills the table.
Otherwise an upsert (state) table is refilled by a backfill of its aggregate: snapshot events, which the
relay publishes. A history table is always refilled from Kafka: what retention removed is gone.

Pinot 0.11 keeps a dropped table on its servers for seconds (about 15 s here, longer under load), and a
table created again meanwhile answered `ServerTableMissing` for over a minute. So the old table must be
gone from every server before the new one is created, and the new one is polled with back-off until it
answers.

A hybrid table (docs/pinot.md) is rebuilt in its realtime part only: the offline part holds history that
Kafka may no longer have (the state topics compact events older than their history retention). The minion's
watermark goes with the dropped realtime part, and a new one would start again from the oldest event the
topic still holds, moving those windows a second time: so the realtime part is created without its task,
the watermark is put back, and only then the task is configured. Events the new realtime part reads again
from before the watermark stay below the broker's time boundary, so they are not counted twice.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import pinotdb.exceptions

from connectors import kafka, postgres
from connectors.pinot import Controller, broker_connection, count
from pipeline.analytics.tables import TASK_TYPE, TableSpec, desired_specs, moment
from pipeline.config import Settings, acting_user, login_url
from pipeline.contract import catalog
from pipeline.contract.codec import Codec
from pipeline.errors import NibbleError, UsageError
from pipeline.outbox.backfill import Backfill, unpublished_snapshots, visible_rows
from pipeline.polling import poll


class RebuildTimeout(NibbleError):
    """A step of the rebuild did not finish in time."""


@dataclass(frozen=True)
class RebuildReport:
    table: str
    source: str  # "kafka" or "backfill"
    pinot_rows: int
    postgres_rows: int | None  # None for a history table: PostgreSQL has no row per event
    seconds: float

    @property
    def equal(self) -> bool:
        return self.postgres_rows is None or self.pinot_rows == self.postgres_rows


def spec_named(settings: Settings, name: str) -> TableSpec:
    specs = {spec.name: spec for spec in desired_specs(settings)}
    if name not in specs:
        raise UsageError(f"unknown Pinot table {name}: choose from {', '.join(specs)}")
    return specs[name]


def refill_source(complete_topic: bool, state_table: bool) -> str:
    """Kafka when the topic still holds every aggregate, or for a history table (nothing else has its
    events); a backfill otherwise."""
    return "kafka" if complete_topic or not state_table else "backfill"


def caught_up(consumed: dict[int, int], ends: dict[int, int]) -> bool:
    """Whether every partition holding records has been consumed up to the end offset noted for it."""
    return all(consumed.get(partition, 0) >= end for partition, end in ends.items() if end > 0)


def rebuild(
    settings: Settings,
    spec: TableSpec,
    timeout_s: float = 600,
    on_step: Callable[[str], None] = lambda message: None,
) -> RebuildReport:
    started = time.monotonic()
    endpoints = settings.endpoints
    controller = Controller(endpoints.pinot_controller_url)
    topic = spec.topic
    aggregate = Codec(endpoints.topic_prefix).stream_for_topic(topic).aggregate_type
    backfill_table = catalog.load()[aggregate].table_name  # the table a backfill walks, counted in PostgreSQL
    state_table = "upsertConfig" in spec.table
    marks = kafka.watermarks(endpoints.kafka_bootstrap_servers, topic)
    complete = all(first == 0 for first, _ in marks.values())
    source = refill_source(complete, state_table)
    on_step(f"{spec.name}: refill from {source} (topic {topic} {'complete' if complete else 'trimmed by retention'})")
    record_run(endpoints.database_url, spec.name, source)

    realtime = f"{spec.name}_REALTIME"
    watermark = controller.task_watermark_ms(TASK_TYPE, realtime) if spec.offline is not None else None
    if controller.realtime_table(spec.name) is not None:
        controller.delete_table(spec.name)
        kept = " (its offline part is kept)" if spec.offline is not None else ""
        on_step(f"{spec.name}: dropped{kept}; waiting until no server holds it")
        _wait(lambda: not controller.hosted(spec.name), timeout_s, f"the Pinot servers to let go of {spec.name}")
    controller.put_schema(copy.deepcopy(spec.schema), exists=controller.schema(spec.name) is not None)
    if spec.offline is not None and controller.offline_table(spec.name) is None:
        controller.put_table(copy.deepcopy(spec.offline), exists=False)
    without_task = {key: value for key, value in copy.deepcopy(spec.table).items() if key != "task"}
    controller.put_table(without_task, exists=False)
    if watermark is not None:
        controller.set_task_watermark_ms(TASK_TYPE, realtime, watermark)
        on_step(f"{spec.name}: the minion continues from {moment(watermark)}, where it had got to")
    if "task" in spec.table:
        controller.put_table(copy.deepcopy(spec.table), exists=True)
    controller.wait_online(spec.name, timeout_s)
    _wait(lambda: pinot_rows(settings, spec.name) is not None, timeout_s, f"{spec.name} to answer queries")
    on_step(f"{spec.name}: created and answering")

    if source == "backfill":
        Backfill(endpoints.database_url).run([backfill_table], restart=True)
        on_step(f"{spec.name}: backfill of {backfill_table} written; waiting for the relay to publish it")
        _wait(
            lambda: unpublished_snapshots(endpoints.database_url, backfill_table) == 0,
            timeout_s,
            f"the relay to publish the snapshots of {backfill_table} (is it running?)",
        )
        marks = kafka.watermarks(endpoints.kafka_bootstrap_servers, topic)
    ends = {partition: end for partition, (_, end) in marks.items()}
    _wait(lambda: caught_up(controller.consumed_offsets(spec.name), ends), timeout_s, f"{spec.name} to read {topic}")
    postgres = visible_rows(endpoints.database_url)[backfill_table] if state_table else None
    return RebuildReport(spec.name, source, pinot_rows(settings, spec.name) or 0, postgres, time.monotonic() - started)


def record_run(database_url: str, table: str, source: str) -> None:
    """Audit the rebuild with the acting user (migration 0022), as the `nibble_backfill` login its refill uses."""
    with postgres.connect(login_url(database_url, "nibble_backfill"), "nibble-rebuild") as conn, conn.transaction():
        conn.execute("SELECT set_config('nibble.actor', %s, true)", (acting_user(),))
        conn.execute("SELECT audit.record_rebuild(%s, %s)", (table, source))


def pinot_rows(settings: Settings, name: str) -> int | None:
    """The table's row count, or None while the broker cannot answer for it."""
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    try:
        return count(cursor, f"SELECT COUNT(*) FROM {name}")  # a name from the checked-in configs, never user text
    except pinotdb.exceptions.Error:
        return None


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll with back-off (0.2 s doubling up to 5 s) until `condition` holds; RebuildTimeout after `timeout_s`."""
    if not poll(condition, timeout_s):
        raise RebuildTimeout(f"timed out after {timeout_s:.0f} s waiting for {what}")
