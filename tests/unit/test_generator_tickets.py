"""The generator's support tickets: who gets one, their priorities and the shape of a ticket's life (no service)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.devstack.generator import TICKET_STEPS, TicketStep, plan_ticket, ticket_reason

OPENED = datetime(2026, 11, 25, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
AGENTS = [uuid.UUID(int=n, version=4) for n in range(1, 13)]


def lives(count: int, reason: str = "late") -> list[list[TicketStep]]:
    rng = random.Random(7)
    return [plan_ticket(rng, uuid.uuid4, reason, OPENED, AGENTS, MINUTE) for _ in range(count)]


def first_response(steps: list[TicketStep]) -> TicketStep | None:
    """The first comment neither internal nor by the ticket's own user (author None)."""
    answers = [s for s in steps if s.kind == "comment" and not s.internal and s.agent is not None]
    return min(answers, key=lambda s: s.at, default=None)


def test_about_three_percent_of_orders_get_a_ticket_and_troubled_orders_more() -> None:
    rng = random.Random(1)
    share = {
        (cancelled, late): sum(ticket_reason(rng, cancelled, late) is not None for _ in range(20_000)) / 20_000
        for cancelled, late in ((False, False), (False, True), (True, False))
    }
    assert 0.01 < share[False, False] < 0.02
    assert share[True, False] > share[False, True] > 3 * share[False, False]
    overall = 0.92 * (0.9 * share[False, False] + 0.1 * share[False, True]) + 0.08 * share[True, False]
    assert 0.02 < overall < 0.04


def test_priorities_are_skewed_with_few_urgent() -> None:
    opened = Counter(steps[0].priority for steps in lives(4000, "delivered"))
    assert opened["medium"] > opened["low"] > opened["high"] > opened["urgent"] > 0
    assert opened["urgent"] / 4000 < 0.08


def test_every_ticket_opens_then_moves_open_in_progress_resolved_closed() -> None:
    for steps in lives(500):
        kinds = [s.kind for s in sorted(steps, key=lambda s: (s.at, TICKET_STEPS.index(s.kind)))]
        assert kinds[0] == "open" and kinds[-2:] == ["resolve", "close"]
        assert kinds.count("open") == kinds.count("assign") == kinds.count("resolve") == kinds.count("close") == 1
        assert all(s.at >= OPENED for s in steps) and len({s.ticket_id for s in steps}) == 1
        starts = [s for s in steps if s.kind == "start"]
        answer = first_response(steps)
        assert (answer is None) == (not starts)
        if answer is not None:  # in progress when the first answer goes out, resolved after it
            assert starts[0].at == answer.at
            assert answer.at < next(s.at for s in steps if s.kind == "resolve")


def test_first_responses_and_resolutions_take_minutes_to_hours_by_priority() -> None:
    waits: dict[str, list[float]] = {}
    resolutions: dict[str, list[float]] = {}
    for steps in lives(3000):
        answer = first_response(steps)
        priority = [s.priority for s in steps if s.priority][-1]
        resolved = next(s.at for s in steps if s.kind == "resolve")
        resolutions.setdefault(priority, []).append((resolved - OPENED) / MINUTE)
        if answer is not None:
            waits.setdefault(priority, []).append((answer.at - OPENED) / MINUTE)
    median = {p: sorted(v)[len(v) // 2] for p, v in waits.items()}
    assert median["urgent"] < median["high"] < median["medium"] < median["low"]
    assert 3 < median["urgent"] < 60 and 60 < median["low"] < 400
    assert all(min(v) > 2 and max(v) < 24 * 60 for v in resolutions.values())
    assert sum(1 for steps in lives(3000) if first_response(steps) is None) / 3000 == pytest.approx(0.05, abs=0.02)


def test_some_tickets_are_reassigned_reprioritised_or_get_internal_notes_and_customer_replies() -> None:
    counted = Counter(
        kind
        for steps in lives(2000)
        for kind in {s.kind if s.kind != "comment" else f"comment {s.internal} {s.agent is None}" for s in steps}
    )
    for kind in ("reassign", "priority", "comment True False", "comment False True"):
        assert 0.05 < counted[kind] / 2000 < 0.8, kind
    for steps in lives(300):
        agents = [s.agent for s in steps if s.kind in ("assign", "reassign")]
        assert len(agents) == len(set(agents))  # a hand-over goes to someone else
