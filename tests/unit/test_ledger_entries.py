"""tests/support/ledger.py, the order ledger entries the query tests publish: summed per order, they equal its
newest state's facts (docs/events.md, "The order ledger"), and only a change of those facts writes entries (the
old state leaving, the new one arriving, as the triggers of migration 0015 write them)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.contract.codec import Codec
from tests.support.ledger import DIMENSIONS, MEASURES, facts, ledger_entries, ledger_rows

PLACED = {
    "order_id": "0d4f5c9e-0000-4000-8000-000000000001",
    "restaurant_id": "0d4f5c9e-0000-4000-8000-000000000002",
    "restaurant_name": "Pho 24",
    "city": "Berlin",
    "cuisine": "vietnamese",
    "placed_at": "2026-11-25T10:17:37.500000+00:00",
    "status": "placed",
    "item_count": 2,
    "subtotal_cents": 1980,
    "total_cents": 2180,
}


def test_a_placed_order_is_one_entry_with_its_whole_facts() -> None:
    assert ledger_entries([PLACED]) == [
        {
            **{name: PLACED[name] for name in DIMENSIONS},
            "orders": 1,
            "cancelled": 0,
            "gmv_cents": 2180,
            "subtotal_cents": 1980,
            "items": 2,
        }
    ]


def test_a_status_change_other_than_cancelling_writes_nothing() -> None:
    assert len(ledger_entries([PLACED, {**PLACED, "status": "confirmed"}, {**PLACED, "status": "delivered"}])) == 1


def test_a_cancellation_counts_it_cancelled_and_takes_its_money_out() -> None:
    _, left, arrived = ledger_entries([PLACED, {**PLACED, "status": "cancelled"}])
    assert {m: left[m] + arrived[m] for m in MEASURES} == {
        "orders": 0,
        "cancelled": 1,
        "gmv_cents": -2180,
        "subtotal_cents": -1980,
        "items": -2,
    }


def test_a_tip_while_live_is_its_difference() -> None:
    _, left, arrived = ledger_entries([PLACED, {**PLACED, "total_cents": 2430}])
    assert {m: left[m] + arrived[m] for m in MEASURES} == {
        "orders": 0,
        "cancelled": 0,
        "gmv_cents": 250,
        "subtotal_cents": 0,
        "items": 0,
    }


def test_a_moved_order_leaves_its_old_dimensions_and_arrives_in_the_new_ones() -> None:
    _, left, arrived = ledger_entries([PLACED, {**PLACED, "city": "Hamburg"}])
    assert left == {**facts(PLACED), **{m: -facts(PLACED)[m] for m in MEASURES}}
    assert arrived == facts({**PLACED, "city": "Hamburg"})


STATES = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["placed", "confirmed", "delivered", "cancelled"]),
        "city": st.sampled_from(["Berlin", "Hamburg"]),
        "restaurant_name": st.sampled_from(["Pho 24", "Pho 25"]),
        "placed_at": st.sampled_from([PLACED["placed_at"], "2026-11-25T08:00:00+00:00"]),
        "item_count": st.integers(0, 5),
        "subtotal_cents": st.integers(0, 10_000),
        "total_cents": st.integers(0, 12_000),
    }
).map(lambda change: {**PLACED, **change})


@given(states=st.lists(STATES, min_size=1, max_size=8))
def test_summed_per_dimensions_the_entries_are_the_newest_state(states: list[dict[str, Any]]) -> None:
    sums: dict[tuple, Counter[str]] = {}
    for entry in ledger_entries(states):
        sums.setdefault(tuple(entry[d] for d in DIMENSIONS), Counter()).update({m: entry[m] for m in MEASURES})
    left = {dims: {m: total[m] for m in MEASURES} for dims, total in sums.items() if any(total.values())}
    newest = facts(states[-1])
    assert left == {tuple(newest[d] for d in DIMENSIONS): {m: newest[m] for m in MEASURES}}


def test_the_rows_encode_as_the_relay_would_publish_them() -> None:
    rows = ledger_rows([PLACED, {**PLACED, "status": "cancelled"}], datetime(2026, 11, 25, 11, tzinfo=UTC))
    assert [(r.aggregate_type, r.event_type, r.schema_version) for r in rows] == [
        ("order_ledger", "OrderLedgerEntry", 1)
    ] * 3
    assert len({r.event_id for r in rows}) == 3
    codec = Codec()
    for row in rows:
        message = codec.encode(row)
        assert message.topic == "nibble.order_ledger" and message.key == PLACED["order_id"].encode()
        assert codec.decode(message.value, "order_ledger", 1)["gmv_cents"] == json.loads(row.payload)["gmv_cents"]
