"""The relay's batch rules, fuzzed (hypothesis): whatever mix of aggregates, poison events, oversized
messages and unacknowledged sends a batch holds, no event is lost silently (each is sent, dead-lettered or
left waiting in the outbox), per-aggregate order holds, and nothing after a failure leaves the outbox."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.codec import Message, PoisonEvent
from pipeline.contract.rows import OutboxRow
from pipeline.outbox.batch import encode_batch, settle

MAX_BYTES = 100
AT = datetime(2026, 11, 25, tzinfo=UTC)

# One row per drawn (aggregate, fate); fate says what encoding it does: fine, poison, or too large.
FATES = st.sampled_from(["ok", "ok", "ok", "poison", "huge"])
BATCHES = st.lists(st.tuples(st.sampled_from("abcde"), FATES), max_size=60)


def rows_of(batch: list[tuple[str, str]]) -> tuple[list[OutboxRow], dict[int, str]]:
    rows = [
        OutboxRow(position, f"e{position}", "order", aggregate, "Fuzzed", "{}", 1, 1, AT)
        for position, (aggregate, _) in enumerate(batch, start=1)
    ]
    return rows, {position: fate for position, (_, fate) in enumerate(batch, start=1)}


def encoder(fates: dict[int, str]):
    def encode(row: OutboxRow) -> Message:
        fate = fates[row.position]
        if fate == "poison":
            raise PoisonEvent(f"position {row.position} does not fit")
        size = MAX_BYTES + 1 if fate == "huge" else 10
        return Message(f"topic-{row.aggregate_id}", row.aggregate_id.encode(), b"x" * (size - 1), [])

    return encode


@settings(max_examples=500, deadline=None)
@given(batch=BATCHES)
def test_every_row_is_sent_dead_lettered_or_left_waiting_in_order(batch: list[tuple[str, str]]) -> None:
    rows, fates = rows_of(batch)
    encoded = encode_batch(rows, encoder(fates), MAX_BYTES)
    sent = [row.position for row, _ in encoded.to_send]
    poison = [row.position for row, _ in encoded.poison]
    assert sent == sorted(sent) and poison == sorted(poison)
    assert not set(sent) & set(poison)
    for row, reason in encoded.poison:
        assert reason and "\n" not in reason
        if fates[row.position] == "huge":
            assert "exceeds NIBBLE_RELAY_MAX_MESSAGE_BYTES" in reason
    # Per aggregate: events up to its first bad one are sent, the bad one is dead-lettered, the rest wait.
    for aggregate in {row.aggregate_id for row in rows}:
        own = [row.position for row in rows if row.aggregate_id == aggregate]
        bad = [p for p in own if fates[p] != "ok"]
        first_bad = bad[0] if bad else None
        assert [p for p in sent if p in own] == [p for p in own if first_bad is None or p < first_bad]
        assert [p for p in poison if p in own] == ([first_bad] if first_bad else [])
    waiting = set(fates) - set(sent) - set(poison)
    assert all(any(p < w and rows[p - 1].aggregate_id == rows[w - 1].aggregate_id for p in poison) for w in waiting)


@settings(max_examples=500, deadline=None)
@given(batch=BATCHES, data=st.data())
def test_only_rows_with_nothing_unacknowledged_before_them_leave_the_outbox(
    batch: list[tuple[str, str]], data: st.DataObject
) -> None:
    rows, fates = rows_of([(aggregate, "ok") for aggregate, _ in batch])
    encoded = encode_batch(rows, encoder(fates), MAX_BYTES)
    failed_positions = data.draw(st.sets(st.sampled_from([row.position for row in rows])) if rows else st.just(set()))
    settled = settle(encoded.to_send, {p: "timed out" for p in failed_positions})
    acknowledged = set(settled.acknowledged)
    assert not acknowledged & failed_positions
    for aggregate in {row.aggregate_id for row in rows}:
        own = [row.position for row in rows if row.aggregate_id == aggregate]
        first_failed = min((p for p in own if p in failed_positions), default=None)
        assert [p for p in own if p in acknowledged] == [p for p in own if first_failed is None or p < first_failed]
    assert settled.published == Counter(f"topic-{rows[p - 1].aggregate_id}" for p in acknowledged)
