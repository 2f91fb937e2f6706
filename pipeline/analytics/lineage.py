"""`nibble trace ORDER_ID`: one order from PostgreSQL to Pinot, so a number on a dashboard can be traced to
the transactions behind it.

PostgreSQL holds the order's state and the events not published yet (outbox, dead letters); the relay
deletes an event once Kafka has it, so the published events are read back from Pinot's history tables
(order_events, order_ledger, delivery_events), which keep each event's id, source transaction and outbox
position. Where each one sits in Kafka: the partition is in the name of the realtime segment that holds it
(`<table>__<partition>__<sequence>__<time>`), the offset is found by reading that partition from the
event's time on until a message carries the event's id (a bounded scan: an event compacted away, or too
far, stays unknown).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from psycopg.rows import dict_row

from connectors import postgres
from connectors.pinot import broker_connection
from connectors.postgres import sql_file
from pipeline.analytics.drift import normalize
from pipeline.analytics.queries import Query
from pipeline.analytics.verify import SQL_DIR
from pipeline.config import Settings
from pipeline.contract import catalog
from pipeline.contract.codec import Codec
from pipeline.errors import NibbleError, UsageError

SEGMENT = re.compile(r"^[A-Za-z0-9_]+?__(\d+)__\d+__")
SCAN_MESSAGES = 50_000  # per event: how far past its time the Kafka look-up reads at most
# Pinot table -> the aggregate type of its topic, for the history tables a trace has a query for (a trace
# follows one order: the support tickets' events are not in it)
HISTORY_TABLES = {
    table: stream.aggregate_type
    for stream in catalog.load().values()
    for table in stream.history_tables
    if (SQL_DIR / f"pinot_trace_{table}.sql").exists()
}


class OrderNotFound(NibbleError):
    """PostgreSQL has no order of that id."""


@dataclass
class Event:
    event_id: str
    table: str  # the Pinot table holding it; "" while it is not published
    event_type: str
    txid: int
    position: int
    occurred_at: datetime
    state: str  # "published", "outbox" or "dead letter"
    facts: dict[str, Any] = field(default_factory=dict)  # the Pinot row's values worth showing
    partition: int | None = None
    topic: str = ""
    offset: int | None = None
    current: bool = False  # the row Pinot's state table holds for the aggregate now


@dataclass
class Trace:
    order: dict[str, Any]
    events: list[Event]

    def as_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            return value.isoformat() if isinstance(value, datetime) else value

        return {
            "order": {key: plain(value) for key, value in self.order.items()},
            "events": [{key: plain(value) for key, value in vars(event).items()} for event in self.events],
        }


def partition_of(segment: str) -> int | None:
    """The Kafka partition of a realtime (LLC) segment's name; None for an offline segment."""
    match = SEGMENT.match(segment or "")
    return int(match.group(1)) if match else None


def trace(settings: Settings, order_id: str, find_offsets: bool = True) -> Trace:
    try:
        uuid.UUID(order_id)
    except ValueError:
        raise UsageError(f"not an order id (a UUID): {order_id!r}") from None
    endpoints = settings.endpoints
    with postgres.connect(endpoints.database_url, "nibble-trace") as conn:
        cursor = conn.cursor(row_factory=dict_row)
        order = cursor.execute(sql_file(__package__, "trace_order"), {"order_id": order_id}).fetchone()
        if order is None:
            raise OrderNotFound(f"PostgreSQL has no order {order_id}")
        waiting = conn.execute(
            sql_file(__package__, "trace_waiting"), {"order_id": order_id, "delivery_id": order["delivery_id"]}
        ).fetchall()
    events = [
        Event(event_id, "", event_type, txid, position, occurred_at, state, {"aggregate": aggregate, "error": error})
        for position, event_id, aggregate, event_type, txid, occurred_at, state, error in waiting
    ]
    pinot = broker_connection(endpoints.pinot_broker_url, endpoints.pinot_query_timeout_ms).cursor()
    current = {row[0] for name in ("orders", "deliveries") for row in _pinot(pinot, f"pinot_trace_{name}", order_id)}
    codec = Codec(endpoints.topic_prefix)
    for table, aggregate_type in HISTORY_TABLES.items():
        query = Query.load(SQL_DIR / f"pinot_trace_{table}.sql")
        names = [column.name for column in query.columns]
        for row in _pinot(pinot, f"pinot_trace_{table}", order_id):
            values = dict(zip(names, row, strict=True))
            events.append(
                Event(
                    event_id=values["event_id"],
                    table=table,
                    event_type=values["event_type"],
                    txid=int(values["source_txid"]),
                    position=int(values["outbox_position"]),
                    occurred_at=datetime.fromtimestamp(int(values["occurred_at"]) / 1000, UTC),
                    state="published",
                    facts={k: normalize(v) for k, v in values.items() if k not in _ENVELOPE},
                    partition=partition_of(values["segment"]),
                    topic=codec.streams[aggregate_type].topic,
                    current=values["event_id"] in current,
                )
            )
    events.sort(key=lambda e: (e.occurred_at, e.position, e.table))
    if find_offsets:
        for event in events:
            if event.state == "published":
                event.offset, event.partition = _kafka_offset(endpoints.kafka_bootstrap_servers, event)
    return Trace(dict(order), events)


_ENVELOPE = {"event_id", "event_type", "source_txid", "outbox_position", "occurred_at", "segment"}


def _pinot(cursor: Any, name: str, order_id: str) -> list[list[Any]]:
    query = Query.load(SQL_DIR / f"{name}.sql")
    cursor.execute(query.render({"order_id": order_id}), {"order_id": order_id})
    return cursor.fetchall()


def _kafka_offset(bootstrap: str, event: Event, timeout_s: float = 10) -> tuple[int | None, int | None]:
    """(offset, partition) of the message carrying the event's id, read from the event's time on."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "nibble-trace",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        topic = consumer.list_topics(event.topic, timeout=10).topics.get(event.topic)
        if topic is None or topic.error is not None:
            return None, event.partition
        partitions = [event.partition] if event.partition is not None else sorted(topic.partitions)
        starts = consumer.offsets_for_times(
            [TopicPartition(event.topic, p, int(event.occurred_at.timestamp() * 1000)) for p in partitions], timeout=10
        )
        wanted = event.event_id.encode()
        assigned = [start for start in starts if start.offset >= 0]  # -1: nothing at or after that time
        consumer.assign(assigned)
        read, at_end, deadline = 0, set(), time.monotonic() + timeout_s
        while read < SCAN_MESSAGES * len(partitions) and len(at_end) < len(assigned) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            read += 1
            if dict(message.headers() or []).get("event_id") == wanted:
                return message.offset(), message.partition()
        return None, event.partition
    finally:
        consumer.close()
