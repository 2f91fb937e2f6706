"""A relay killed mid-batch, as the end-to-end tests stage it: kill -9 while Kafka holds events of its batch
that the outbox still has (acknowledged, not yet deleted), so the restarted relay sends them again and Pinot's
dedup has duplicates to drop; or, when no try catches a batch in flight, those events sent by the test
itself, as the killed relay would have."""

from __future__ import annotations

import time

import psycopg
from confluent_kafka import Producer

from pipeline.contract import catalog
from pipeline.contract.codec import Codec
from pipeline.contract.rows import OutboxRow
from tests.support.load import event_ids
from tests.support.relay import RelayProcess

OUTBOX_ROWS = (
    "SELECT position, event_id::text, aggregate_type, aggregate_id::text, event_type, payload::text, "
    "schema_version, txid::text::bigint, occurred_at FROM {}.outbox ORDER BY position LIMIT %s"
)


def waiting_events(db: str) -> set[str]:
    """The event ids every outbox of `db` still holds."""
    with psycopg.connect(db) as conn:
        return {
            event_id
            for schema in catalog.outboxes(catalog.load())
            for (event_id,) in conn.execute(f"SELECT event_id::text FROM {schema}.outbox")
        }


def kill_mid_batch(
    relay: RelayProcess, bootstrap: str, db: str, start: dict[str, dict[int, int]], tail: int, tries: int = 20
) -> tuple[set[str], int]:
    """kill -9 the relay while the last `tail` messages of a partition of `start`'s topics hold events the
    outbox still has; returns those of them the outbox holds after the kill (none if no try caught a batch in
    flight) and the tries."""
    for attempt in range(1, tries + 1):
        relay.pause()
        acknowledged = waiting_events(db) & set(event_ids(bootstrap, start, tail=tail))
        if acknowledged:
            relay.kill()
            return _still_waiting(db, acknowledged), attempt
        relay.resume()
        time.sleep(0.05 * attempt)  # land elsewhere in the relay's cycle
    relay.kill()
    return set(), tries


def _still_waiting(db: str, events: set[str]) -> set[str]:
    """Those of `events` the outbox holds once the killed relay's last statement has landed: freezing the relay
    does not freeze its PostgreSQL backend, so a delete it had sent just before may still commit (seen: a whole
    batch of 500 gone after the kill, none to send again). Two equal reads half a second apart."""
    held = events & waiting_events(db)
    while True:
        time.sleep(0.5)
        now = events & waiting_events(db)
        if now == held:
            return held
        held = now


def send_waiting_events(bootstrap: str, db: str, outbox: str, count: int) -> set[str]:
    """Publish the first `count` rows of `outbox` behind the relay's back, as a relay killed after Kafka's
    acknowledgement and before its delete would have; returns their event ids."""
    with psycopg.connect(db) as conn:
        rows = [OutboxRow(*row) for row in conn.execute(OUTBOX_ROWS.format(outbox), (count,))]
    codec = Codec()
    producer = Producer({"bootstrap.servers": bootstrap})
    for message in map(codec.encode, rows):
        producer.produce(message.topic, message.value, message.key, headers=message.headers)
    assert producer.flush(30) == 0
    return {row.event_id for row in rows}
