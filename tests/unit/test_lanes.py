"""How relays share an outbox's lanes (pure rules: no service needed)."""

from __future__ import annotations

import pytest

from pipeline.outbox.lanes import Plan, plan, target


def settle(relays: list[int], lane_count: int, holders: dict[int, int], ticks: int = 4) -> dict[int, int]:
    """Every relay applies its plan once per tick, in turn, as the real loop does; returns lane -> holder."""
    holders = dict(holders)
    for _ in range(ticks):
        for me in relays:
            step = plan(me, relays, lane_count, holders)
            for lane in step.release:
                del holders[lane]
            for lane in step.acquire:
                holders.setdefault(lane, me)  # a lane another relay took first stays with it
    return holders


@pytest.mark.parametrize(
    ("lane_count", "relays", "shares"),
    [(8, 1, [8]), (8, 2, [4, 4]), (8, 3, [3, 3, 2]), (4, 3, [2, 1, 1]), (2, 3, [1, 1, 0])],
)
def test_targets_split_the_lanes_and_add_up(lane_count: int, relays: int, shares: list[int]) -> None:
    pids = [300, 100, 200][:relays]
    assert [target(pid, pids, lane_count) for pid in sorted(pids)] == shares
    assert sum(shares) == lane_count


def test_one_relay_takes_every_lane() -> None:
    assert settle([7], 8, {}) == {lane: 7 for lane in range(8)}


def test_a_new_relay_gets_a_fair_share_without_a_restart() -> None:
    holders = {lane: 100 for lane in range(8)}
    after = settle([100, 200], 8, holders)
    assert sorted(after.values()).count(100) == 4 and sorted(after.values()).count(200) == 4
    third = settle([100, 200, 300], 8, after)
    assert sorted(list(third.values()).count(pid) for pid in (100, 200, 300)) == [2, 3, 3]
    assert len(third) == 8


def test_survivors_take_a_dead_relays_lanes() -> None:
    holders = {0: 100, 1: 100, 2: 100, 3: 200, 4: 200, 5: 200, 6: 300, 7: 300}
    alive = {lane: pid for lane, pid in holders.items() if pid != 300}  # its session ended: its locks are gone
    after = settle([100, 200], 8, alive)
    assert len(after) == 8 and sorted(list(after.values()).count(pid) for pid in (100, 200)) == [4, 4]


def test_a_relay_over_its_share_releases_its_highest_lanes() -> None:
    holders = {lane: 100 for lane in range(8)}
    assert plan(100, [100, 200], 8, holders) == Plan(release=(4, 5, 6, 7))
    assert plan(200, [100, 200], 8, holders) == Plan()  # nothing free yet: it waits for the release


def test_a_relay_at_its_share_does_nothing() -> None:
    holders = {0: 100, 1: 100, 2: 200, 3: 200}
    assert plan(100, [100, 200], 4, holders) == Plan()


def test_a_relay_below_its_share_tries_only_free_lanes_up_to_its_target() -> None:
    step = plan(200, [100, 200], 8, {0: 100, 1: 100, 2: 100, 3: 100})
    assert sorted(step.acquire) == [4, 5, 6, 7]
    step = plan(200, [100, 200], 8, {0: 100, 1: 100, 2: 100, 3: 100, 4: 200, 5: 200, 6: 200})
    assert step.acquire == (7,)


def test_more_relays_than_lanes_leaves_some_idle() -> None:
    after = settle([100, 200, 300], 2, {})
    assert len(after) == 2 and len(set(after.values())) == 2
