"""The relay's per-batch ordering rules (pipeline/outbox/batch.py), without any service."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.contract.codec import Message, PoisonEvent
from pipeline.contract.rows import OutboxRow
from pipeline.outbox.batch import encode_batch, settle

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def row(position: int, aggregate: str, payload: str = "{}") -> OutboxRow:
    return OutboxRow(position, f"e{position}", "order", aggregate, "OrderUpdated", payload, 1, 1, AT)


def fake_encode(row: OutboxRow) -> Message:
    """Poison when the payload says so; a message as large as the payload otherwise."""
    if row.payload == "poison":
        raise PoisonEvent("does not fit")
    return Message(f"topic-{row.aggregate_id}", row.aggregate_id.encode(), row.payload.encode(), [])


def test_a_poison_event_parks_its_aggregate_and_no_other() -> None:
    rows = [row(1, "a"), row(2, "b", "poison"), row(3, "a"), row(4, "b"), row(5, "c"), row(6, "b")]
    encoded = encode_batch(rows, fake_encode, max_bytes=1000)
    assert [r.position for r, _ in encoded.to_send] == [1, 3, 5]
    assert [(r.position, error) for r, error in encoded.poison] == [(2, "does not fit")]


def test_events_before_the_poison_one_still_go_out() -> None:
    encoded = encode_batch([row(1, "a"), row(2, "a", "poison"), row(3, "a")], fake_encode, max_bytes=1000)
    assert [r.position for r, _ in encoded.to_send] == [1]
    assert [r.position for r, _ in encoded.poison] == [2]


def test_an_oversized_event_is_poison_naming_the_limit() -> None:
    encoded = encode_batch([row(1, "a", "x" * 100), row(2, "a")], fake_encode, max_bytes=50)
    assert encoded.to_send == []
    assert [r.position for r, _ in encoded.poison] == [1]
    assert "exceeds NIBBLE_RELAY_MAX_MESSAGE_BYTES=50" in encoded.poison[0][1]


def test_a_failed_delivery_blocks_the_later_events_of_its_aggregate_only() -> None:
    rows = [row(1, "a"), row(2, "b"), row(3, "a"), row(4, "b"), row(5, "a")]
    sent = encode_batch(rows, fake_encode, max_bytes=1000).to_send
    settled = settle(sent, failed={3: "timed out"})
    assert settled.acknowledged == [1, 2, 4]
    assert settled.published == {"topic-a": 1, "topic-b": 2}


def test_everything_acknowledged_leaves_the_outbox() -> None:
    sent = encode_batch([row(1, "a"), row(2, "b")], fake_encode, max_bytes=1000).to_send
    assert settle(sent, failed={}).acknowledged == [1, 2]
