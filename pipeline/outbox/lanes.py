"""Lanes: how relay processes share an outbox (pure rules; no I/O).

An outbox is split into `lane_count` lanes by a stable hash of the aggregate id (computed by PostgreSQL in
the claim, docs/relay.md), so all events of one aggregate go through one lane and keep their order. Each
lane has a lease (an advisory lock). Every relay computes the same targets from the same facts (the live
relays and who holds which lane): the relays sorted by backend pid, the first `lane_count % live` of them
get one lane more than the others. A relay above its target releases lanes; one below takes free lanes.
Everyone converges within a rebalance tick or two, without talking to each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    release: tuple[int, ...] = ()
    acquire: tuple[int, ...] = ()  # free lanes to try, in order; stop once the target is reached


def target(me: int, live: list[int], lane_count: int) -> int:
    """How many lanes relay `me` should hold when `live` relays (backend pids, `me` among them) share them."""
    relays = sorted(set(live) | {me})
    share, extra = divmod(lane_count, len(relays))
    return share + (1 if relays.index(me) < extra else 0)


def plan(me: int, live: list[int], lane_count: int, holders: dict[int, int]) -> Plan:
    """What relay `me` does this tick. holders: lane -> pid of the relay holding its lease."""
    mine = sorted(lane for lane, pid in holders.items() if pid == me)
    want = target(me, live, lane_count)
    if len(mine) > want:
        return Plan(release=tuple(mine[want:]))
    free = [lane for lane in range(lane_count) if lane not in holders]
    if len(mine) == want or not free:
        return Plan()
    # Start each relay's search at a different free lane, so that two newcomers rarely race for the same one.
    start = me % len(free)
    return Plan(acquire=tuple(free[start:] + free[:start])[: want - len(mine)])
