"""History in offline tables, memory bounded by a window (docs/pinot.md): several simulated days written in
minutes through the whole pipeline, the minion moving each closed day to the offline parts, the window then
shortened so the realtime parts and their dedup and upsert keys shrink, and Pinot still equal to PostgreSQL.

The tables are a set of this module's own (NIBBLE_PINOT_TABLE_PREFIX), on topics of its own, so its window,
buckets and minion schedule are not the stack's: days of 24 hours, a buffer of 10 minutes, the minion every
10 seconds, segments of a few hundred rows that also commit after a minute. The outbox clock of the scratch
database follows the simulated time (tests/support/history.py), so each event occurred on its simulated day.
While the days are written the window spans all of them (a window shorter than the data written at once
could drop a day before the minion moved it); once the minion has moved every closed day, the window is
shortened to 26 hours (a day, the buffer, the minion's schedule and the broker's hour at the boundary), or
longer when a quiet partition held the minion a day back, and Pinot's retention manager is run: the realtime
parts lose the old days, the offline parts keep them.

The relay is killed with -9 while it drains two days of backlog, and restarted: re-sent events must count
once. The minion is killed with -9 in its first task on these tables and started again: the task's bucket
must still move, nothing lost or doubled (0.11 names a bucket's offline segments by their time range, so a
task run again uploads the same segments over any it had uploaded). After the window has been shortened,
the Pinot server is killed with -9 and restarted: it must answer what PostgreSQL holds again. An event
re-sent after its day moved offline and left the realtime part is read by the realtime part again (its key
left the dedup map with the day) but lies below the broker's time boundary: it must not be counted twice
either; nor a recent event re-sent within the window.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pinotdb.exceptions
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors import kafka
from connectors.pinot import Controller, broker_connection, time_boundary
from pipeline.analytics.rebuild import rebuild
from pipeline.analytics.tables import TASK_TYPE, apply, desired_specs, table_status
from pipeline.config import Settings, load_settings, span_seconds
from pipeline.devstack.generator import Generator
from pipeline.devstack.stack import LocalStack
from tests.support.database import scratch_database
from tests.support.exactness import (
    QUERY_CHECKS,
    STATE_TABLES,
    Ingested,
    await_pinot,
    backlog,
    compare,
    record_committed_events,
)
from tests.support.history import MinionKiller, drop_tables_and_topics, shift_outbox_clock, write_span
from tests.support.polling import wait_until
from tests.support.prefixed_tables import PrefixedCursor
from tests.support.relay import RelayProcess
from tests.support.services import Services

pytestmark = pytest.mark.slow

DAYS = 4  # full simulated days before today
PEAK_PER_MINUTE = 2.0  # orders per minute at a dinner peak: ~1,300 orders, ~15,000 events a day
WRITING = {"history_bucket": "1d", "history_buffer": "10m", "minion_schedule": "10s", "realtime_window": "6d"}
WINDOW = "26h"  # the shortest window the bucket, buffer and schedule allow (pipeline/config.py), rounded up
SEGMENTS = {"segment_rows": 2000, "segment_time": "1m"}


@dataclass
class History:
    services: Services
    settings: Settings
    scope: Ingested
    generator: Generator
    topic_prefix: str
    written_until: datetime  # the simulated clock's last minute (real time then)
    minion_killer: MinionKiller  # kills the minion in the first task on this module's tables
    window: str = WINDOW  # the shortened window, once test_a_shorter_window... has chosen it

    @property
    def controller(self) -> Controller:
        return Controller(self.settings.endpoints.pinot_controller_url)

    @property
    def hybrid(self) -> list[str]:
        return [spec.name for spec in desired_specs(self.settings) if spec.offline is not None]

    def with_window(self, window: str) -> Settings:
        return self.settings.model_copy(
            update={"pinot": self.settings.pinot.model_copy(update={"realtime_window": window})}
        )


def _settings(services: Services, table_prefix: str, topic_prefix: str) -> Settings:
    settings = services.settings(topic_prefix)
    pinot = settings.pinot.model_copy(update={"table_prefix": table_prefix, **WRITING, **SEGMENTS})
    return settings.model_copy(update={"pinot": pinot})


@pytest.fixture(scope="module")
def history(services: Services) -> Iterator[History]:
    tag = uuid.uuid4().hex[:8]
    table_prefix, topic_prefix = f"h{tag}_", f"h{tag}."
    settings = _settings(services, table_prefix, topic_prefix)
    names = {spec.name.removeprefix(table_prefix) for spec in desired_specs(settings)}
    with scratch_database(services.database_url, "history", migrated=True) as db:
        shift_outbox_clock(db)
        record_committed_events(db)
        try:
            generator = Generator(db, seed=18, city_suffix=f"-{tag}")
            start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS)
            killer = MinionKiller(LocalStack(load_settings()), table_prefix)
            killer.start()
            relay = RelayProcess(services, db, topic_prefix)
            relay.pause()  # two days of backlog, drained while the relay is killed
            write_span(generator, start, start + timedelta(days=2), PEAK_PER_MINUTE)
            # The tables only now: a consuming segment that reads nothing for its flush time is given another
            # hour by 0.11, and would then hold the first days with the last ones, never older than the window.
            apply(settings)
            relay.resume()
            wait_until(lambda: backlog(db) < 20_000, 120, what="the relay to be draining the backlog")
            relay.kill()
            relay = RelayProcess(services, db, topic_prefix)
            until = datetime.now(UTC) - timedelta(minutes=1)
            write_span(generator, start + timedelta(days=2), until, PEAK_PER_MINUTE)
            wait_until(lambda: backlog(db) == 0, 300, what="the relay to publish every event")
            relay.terminate()
            cities = sorted({r.city for r in generator.world.restaurants})
            cursor = PrefixedCursor(broker_connection(services.pinot_broker_url).cursor(), table_prefix, names)
            scope = Ingested(db, cities, start, datetime.now(UTC), cursor)
            yield History(services, settings, scope, generator, topic_prefix, until, killer)
        finally:
            killer.stop()
            drop_tables_and_topics(settings, topic_prefix)


def _moved_through(history: History) -> datetime:
    """The last day boundary the minion can have reached: every day that ended a buffer before the writing did."""
    buffer = timedelta(seconds=span_seconds(history.settings.pinot.history_buffer))
    return (history.written_until - buffer).replace(hour=0, minute=0, second=0, microsecond=0)


def _movable_through_ms(history: History, name: str, through: datetime) -> int:
    """The last day boundary the minion can reach on `name`: `through`, or the day its quietest partition's
    newest completed segment ends in. 0.11 skips a window whose data may go on in a consuming segment ("Window
    data overflows into CONSUMING segments"), and a partition that got no event since, as a ledger partition
    can just after midnight, holds that day until its consuming segment completes."""
    newest: dict[str, int] = {}
    for segment, end in history.controller.completed_segment_ends(name).items():
        partition = segment.split("__")[1]
        newest[partition] = max(end, newest.get(partition, 0))
    if not newest:
        return int(through.timestamp() * 1000)
    day = datetime.fromtimestamp(min(newest.values()) / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(min(through, day).timestamp() * 1000)


def test_the_minion_moves_every_closed_day_offline_though_killed_mid_task_and_pinot_equals_postgresql(
    history: History,
) -> None:
    wait_until(lambda: history.minion_killer.killed_in is not None, 600, what="the minion to start a task of ours")
    comparison = await_pinot(history.scope)
    assert comparison.equal, comparison.report()
    through = _moved_through(history).timestamp() * 1000
    movable = {n: _movable_through_ms(history, n, _moved_through(history)) for n in history.hybrid}

    def moved() -> bool:
        marks = {n: history.controller.task_watermark_ms(TASK_TYPE, f"{n}_REALTIME") for n in history.hybrid}
        return all(mark is not None and mark >= movable[n] for n, mark in marks.items())

    wait_until(moved, 600, what="the minion to move every closed day to the offline tables")
    statuses = {s.name: s for s in table_status(history.settings)}
    for name in history.hybrid:
        assert statuses[name].offline_rows, f"{name} has no offline rows"
        boundary = time_boundary(history.settings.endpoints.pinot_broker_url, name)
        assert boundary is not None and boundary < through
    comparison = compare(history.scope)  # the broker merges both parts at the boundary: still equal
    assert comparison.equal, comparison.report()


@pytest.mark.parametrize("name", sorted(QUERY_CHECKS))
def test_every_library_query_over_the_days_equals_postgresql(history: History, name: str) -> None:
    QUERY_CHECKS[name](history.scope)


def _shortest_safe_window(history: History) -> str:
    """WINDOW, or as much longer as the broker needs: it reads a hybrid table's offline part only below the
    time boundary, so retention must keep every realtime segment that ends at or after it. Just after midnight a
    quiet partition can hold the minion, and the boundary, a day back (_movable_through_ms)."""
    boundaries = [time_boundary(history.settings.endpoints.pinot_broker_url, name) for name in history.hybrid]
    assert None not in boundaries, boundaries
    oldest = min(b for b in boundaries if b is not None)
    hours = math.ceil((time.time() * 1000 - oldest) / 3_600_000) + 1  # + 1 h: the clock runs on to retention
    return f"{max(hours, span_seconds(WINDOW) // 3600)}h"


def test_a_shorter_window_drops_realtime_keys_and_history_stays_equal(history: History) -> None:
    before = {s.name: s for s in table_status(history.settings)}
    history.window = _shortest_safe_window(history)
    cutoff_ms = int((time.time() - span_seconds(history.window)) * 1000)
    # Retention deletes a segment by its newest event: a stream of few events (tickets) cuts segments by time,
    # each spanning days of this compressed history, and keeps them until their last day leaves the window.
    expiring = {name for name in history.hybrid if _segments_ended_before(history, name, cutoff_ms)}
    assert {n.removeprefix(history.settings.pinot.table_prefix) for n in expiring} >= {
        "order_events",
        "delivery_events",
        "order_ledger",
    }
    apply(history.with_window(history.window))
    for spec in desired_specs(history.settings):
        history.controller.run_periodic_task("RetentionManager", spec.name, "REALTIME")

    def dropped() -> bool:
        now = {s.name: s for s in table_status(history.settings)}
        return all(now[n].realtime_rows < before[n].realtime_rows for n in expiring) and not any(
            _segments_ended_before(history, n, cutoff_ms) for n in expiring
        )

    wait_until(dropped, 300, what="the retention manager to drop the realtime segments older than the window")
    after = {s.name: s for s in table_status(history.settings)}
    # Retention never touches the offline parts; they may still grow: a day held back by a quiet partition
    # (_movable_through_ms) moves as soon as that partition's consuming segment completes.
    for name in history.hybrid:
        assert after[name].offline_rows >= before[name].offline_rows
    for name in expiring:
        assert after[name].heap_keys < before[name].heap_keys
    _assert_history_equal_and_state_windowed(history)


def _segments_ended_before(history: History, name: str, cutoff_ms: int) -> int:
    """How many completed realtime segments of `name` hold only events older than `cutoff_ms`."""
    return sum(
        1
        for m in history.controller.segments(f"{name}_REALTIME")
        if m.get("segment.realtime.status") == "DONE" and int(m["segment.end.time"]) < cutoff_ms
    )


def _assert_history_equal_and_state_windowed(history: History) -> None:
    """The history (event tables, ledger) equals PostgreSQL across both parts; the state tables hold what
    changed within the window: PostgreSQL's other rows are missing there, and nothing is stale."""
    state = {spec.table for spec in STATE_TABLES}
    differences = compare(history.scope).differences
    wrong = [d for d in differences if d.table not in state or d.kind != "missing"]
    assert not wrong, "\n".join(map(str, wrong[:20]))
    assert {d.table for d in differences} <= state


def _reconsume_with_the_new_config(history: History, name: str) -> None:
    """Re-create each partition's consuming segment of `name`: 0.11 reads a changed table config (here the
    window's filter) only when it creates a segment, and a consuming segment idle past its flush time is given
    another hour. A reset (disabled, then enabled) starts it again from its first offset with the new config."""
    realtime = f"{name}_REALTIME"
    consuming = history.controller.consuming_segments(name)
    assert len(consuming) == history.settings.endpoints.kafka_topic_partitions, consuming
    for segment in consuming:
        history.controller.reset_segment(realtime, segment)
    history.controller.wait_online(name)
    topic = f"{history.topic_prefix}nibble.orders"
    wait_until(lambda: _caught_up(history, name, topic), 120, what=f"{name} to read its topic again")


def _resend(history: History, topic: str, before_ms: int | None, after_ms: int | None) -> str:
    """Publish again, byte for byte, the first message of the topic whose event occurred before `before_ms`
    (or after `after_ms`); returns its event id."""
    bootstrap = history.settings.endpoints.kafka_bootstrap_servers
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None or message.error():
                continue
            headers = {k: v.decode() for k, v in message.headers() or []}
            occurred = int(headers["occurred_at"])
            if (before_ms is not None and occurred < before_ms) or (after_ms is not None and occurred > after_ms):
                producer = Producer({"bootstrap.servers": bootstrap})
                producer.produce(topic, message.value(), message.key(), headers=message.headers())
                assert producer.flush(30) == 0
                return headers["event_id"]
    finally:
        consumer.close()
    raise AssertionError(f"no message of {topic} in the asked time range")


def test_a_resent_event_counts_once_on_either_side_of_the_boundary(history: History) -> None:
    _reconsume_with_the_new_config(history, f"{history.settings.pinot.table_prefix}orders")
    name = f"{history.settings.pinot.table_prefix}order_events"
    boundary = time_boundary(history.settings.endpoints.pinot_broker_url, name)
    assert boundary is not None
    topic = f"{history.topic_prefix}nibble.orders"
    first_day_ends = int(history.scope.since.timestamp() * 1000) + 86_400_000
    old = _resend(history, topic, before_ms=first_day_ends, after_ms=None)  # moved, and out of the window
    recent = _resend(history, topic, before_ms=None, after_ms=boundary + 3_600_000)  # in the window
    wait_until(lambda: _caught_up(history, name, topic), 120, what=f"{name} to read the re-sent events")

    def counted(event_id: str) -> int:
        [[n]] = history.scope.pinot_rows(f"SELECT COUNT(*) FROM order_events WHERE event_id = '{event_id}'")
        return int(n)

    assert (counted(old), counted(recent)) == (1, 1)
    # Nor does the old copy bring its order back into `orders` with a state long replaced.
    _assert_history_equal_and_state_windowed(history)


def _caught_up(history: History, name: str, topic: str) -> bool:
    marks = kafka.watermarks(history.settings.endpoints.kafka_bootstrap_servers, topic)
    consumed = history.controller.consumed_offsets(name)
    return all(consumed.get(partition, 0) >= end for partition, (_, end) in marks.items() if end > 0)


def test_a_rebuilt_hybrid_table_keeps_its_history_and_the_minion_where_it_was(history: History) -> None:
    spec = next(s for s in desired_specs(history.with_window(history.window)) if s.name.endswith("_order_events"))
    realtime = f"{spec.name}_REALTIME"
    watermark = history.controller.task_watermark_ms(TASK_TYPE, realtime)
    offline_rows = {s.name: s.offline_rows for s in table_status(history.settings)}[spec.name]
    steps: list[str] = []
    settings = history.with_window(history.window)
    # The rebuild audits its run (migration 0022) in the module's migrated database.
    endpoints = settings.endpoints.model_copy(update={"database_url": history.scope.db})
    rebuild(settings.model_copy(update={"endpoints": endpoints}), spec, timeout_s=300, on_step=steps.append)
    assert any("its offline part is kept" in step for step in steps)
    assert history.controller.task_watermark_ms(TASK_TYPE, realtime) == watermark
    assert {s.name: s.offline_rows for s in table_status(history.settings)}[spec.name] == offline_rows
    # The new realtime part read the whole topic again: the days already moved lie below the boundary.
    _assert_history_equal_and_state_windowed(history)


def test_a_pinot_server_killed_and_restarted_answers_equal_postgresql(history: History) -> None:
    """Last, the most disruptive: every consuming segment on the server starts again from its first offset."""
    stack = LocalStack(load_settings())
    stack.restart("pinot-server", hard=True)  # kill -9, start, wait for its health probe

    def equal() -> bool:
        try:
            _assert_history_equal_and_state_windowed(history)
        except (AssertionError, pinotdb.exceptions.Error):
            return False
        return True

    wait_until(equal, 600, what="the restarted Pinot server to answer what PostgreSQL holds")
