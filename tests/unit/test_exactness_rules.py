"""The exactness check's rules (tests/support/exactness.py), without a service: what counts as a difference,
how it reads, and that every column of the Pinot schemas is compared (a column added to a schema and
forgotten here fails this test, not silently nothing)."""

from __future__ import annotations

from tests.support.exactness import (
    ENVELOPE,
    EVENT_TABLES,
    LEDGER_GROUP,
    LEDGER_MEASURES,
    NOT_COMPARED,
    STATE_TABLES,
    Comparison,
    diff_ledger,
    diff_rows,
    pinot_schema,
    slice_prefixes,
)

EVENTS = [{"event_id": "e1", "order_id": "o1"}, {"event_id": "e2", "order_id": "o1"}]
LEDGER = {
    "order_id": "o1",
    "restaurant_id": "r1",
    "restaurant_name": "Thai 1",
    "city": "Lisbon",
    "cuisine": "thai",
    "placed_at": 1_000,
    "orders": 1,
    "cancelled": 0,
    "gmv_cents": 1299,
    "subtotal_cents": 1000,
    "items": 2,
}


def columns(table: str) -> set[str]:
    schema = pinot_schema(table)
    kinds = ("dimensionFieldSpecs", "metricFieldSpecs", "dateTimeFieldSpecs")
    return {spec["name"] for kind in kinds for spec in schema.get(kind, [])}


def test_equal_rows_make_no_difference() -> None:
    assert diff_rows("order_events", "order_events event", "event_id", EVENTS, list(reversed(EVENTS))) == []


def test_the_same_event_id_twice_is_a_duplicate_named_by_its_id() -> None:
    [difference] = diff_rows("order_events", "order_events event", "event_id", EVENTS, [*EVENTS, EVENTS[1]])
    assert str(difference) == "duplicate in Pinot (2 rows): order_events event e2"


def test_missing_extra_and_stale_rows_are_named_by_id() -> None:
    observed = [{"event_id": "e2", "order_id": "o9"}, {"event_id": "e3", "order_id": "o1"}]
    found = [str(d) for d in diff_rows("order_events", "order_events event", "event_id", EVENTS, observed)]
    assert found == [
        "missing in Pinot: order_events event e1",
        "extra in Pinot: order_events event e3",
        "stale column order_id of order_events event e2: pinot='o9' pg='o1'",
    ]


def test_a_ledger_nets_to_one_live_slice_per_order() -> None:
    moved = {**LEDGER, "city": "Porto"}  # placed in Porto, moved: the Porto state left (nets to zero)
    left = {**moved, **dict.fromkeys(LEDGER_MEASURES, 0)}
    assert diff_ledger([LEDGER], [LEDGER, left]) == []
    assert [str(d) for d in diff_ledger([LEDGER], [LEDGER, moved])] == [
        "stale column live slices of ledger of order o1: "
        "pinot=[['r1', 'Thai 1', 'Lisbon', 'thai', 1000], ['r1', 'Thai 1', 'Porto', 'thai', 1000]] pg=1"
    ]


def test_a_ledger_entry_counted_twice_or_not_at_all_is_reported() -> None:
    doubled = {**LEDGER, **{m: 2 * LEDGER[m] for m in LEDGER_MEASURES}}
    assert [d.column for d in diff_ledger([LEDGER], [doubled])] == ["orders", "gmv_cents", "subtotal_cents", "items"]
    netted = {**LEDGER, **dict.fromkeys(LEDGER_MEASURES, 0)}
    assert [d.column for d in diff_ledger([LEDGER], [netted])] == ["orders", "gmv_cents", "subtotal_cents", "items"]
    assert [str(d) for d in diff_ledger([LEDGER], [])] == ["missing in Pinot: ledger of order o1"]
    assert [str(d) for d in diff_ledger([], [LEDGER])] == ["extra in Pinot: ledger of order o1"]
    assert diff_ledger([], [netted]) == []  # entries of an order that left the scope, netting to nothing


def test_the_report_names_the_first_differences() -> None:
    differences = diff_rows("order_events", "order_events event", "event_id", EVENTS, [])
    report = Comparison({"order_events": 2}, differences).report(first=1)
    assert report.splitlines() == [
        "Pinot differs from PostgreSQL in 2 places (order_events missing: 2; PostgreSQL holds order_events 2); "
        "the first 1:",
        "  missing in Pinot: order_events event e1",
    ]
    assert Comparison({"orders": 3}).report() == "Pinot equals PostgreSQL (orders 3)"


def test_every_state_table_column_is_compared() -> None:
    for spec in STATE_TABLES:
        assert columns(spec.table) - NOT_COMPARED.get(spec.table, set()) == set(spec.pinot_columns), spec.table


def test_every_ledger_and_event_column_is_compared_or_a_past_state() -> None:
    # The ledger: its envelope with the events, its dimensions and measures per order.
    assert columns("order_ledger") == {*ENVELOPE, *LEDGER_GROUP, *LEDGER_MEASURES}
    # The event tables: their ids, aggregates and envelopes; each row's payload is a past state, which the
    # state tables check in its present form.
    for events in EVENT_TABLES:
        assert set(events.columns) <= columns(events.table)


def test_large_scopes_are_read_in_slices_of_at_most_50_000_rows() -> None:
    assert slice_prefixes(50_000) == [""]
    assert len(slice_prefixes(50_001)) == 16
    assert len(slice_prefixes(800_001)) == 256
