"""The relay's per-batch ordering rules, apart from any I/O (unit-tested without services).

Per aggregate, events must reach Kafka in outbox order. Two rules keep that within a batch:
- parking: after an aggregate's poison event (one that can never be encoded), its later events are neither
  sent nor dead-lettered; they wait behind it in the outbox, and the claim query skips the aggregate until an
  operator replays or discards the dead letter;
- blocking: after an aggregate's event that Kafka did not acknowledge, its later events are not deleted even
  if acknowledged; the next batch re-sends them after it (same event ids, so consumers de-duplicate).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipeline.contract.codec import Message, PoisonEvent
from pipeline.contract.rows import OutboxRow


@dataclass(frozen=True)
class Encoded:
    to_send: list[tuple[OutboxRow, Message]]
    poison: list[tuple[OutboxRow, str]]  # row and why it can never be published


@dataclass(frozen=True)
class Settled:
    acknowledged: list[int]  # positions Kafka holds and nothing before them is missing: delete them
    published: Counter[str]  # acknowledged events per topic


def encode_batch(rows: list[OutboxRow], encode: Callable[[OutboxRow], Message], max_bytes: int) -> Encoded:
    to_send: list[tuple[OutboxRow, Message]] = []
    poison: list[tuple[OutboxRow, str]] = []
    parked: set[str] = set()
    for row in rows:
        if row.aggregate_id in parked:
            continue
        try:
            message = encode(row)
            if message.size > max_bytes:
                raise PoisonEvent(f"message of {message.size} bytes exceeds NIBBLE_RELAY_MAX_MESSAGE_BYTES={max_bytes}")
        except PoisonEvent as exc:
            poison.append((row, str(exc)))
            parked.add(row.aggregate_id)
            continue
        to_send.append((row, message))
    return Encoded(to_send, poison)


def settle(to_send: list[tuple[OutboxRow, Message]], failed: Mapping[int, str]) -> Settled:
    """Which sent rows may leave the outbox, given the positions Kafka did not acknowledge."""
    blocked: set[str] = set()
    acknowledged: list[int] = []
    published: Counter[str] = Counter()
    for row, message in to_send:
        if row.position in failed or row.aggregate_id in blocked:
            blocked.add(row.aggregate_id)
            continue
        acknowledged.append(row.position)
        published[message.topic] += 1
    return Settled(acknowledged, published)
