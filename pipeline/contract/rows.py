"""The outbox row as the contract reads it: what the codec turns into a Kafka message (docs/events.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class OutboxRow:
    """One outbox row as claim_batch.sql reads it; the payload is the jsonb as text (the codec parses it).
    Not frozen: a frozen dataclass's __init__ costs ~1 us more per row, and the claim builds 5,000 a batch."""

    position: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: str
    schema_version: int
    txid: int
    occurred_at: datetime
