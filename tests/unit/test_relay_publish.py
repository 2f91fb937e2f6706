"""The relay's produce step with a fake producer (no Kafka): with delivery reports for failures only, each
failed message is traced back to its outbox position by its value, and the rest count as acknowledged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import KafkaError

from pipeline.config import load_settings
from pipeline.contract.codec import Message
from pipeline.contract.rows import OutboxRow
from pipeline.outbox.batch import settle
from pipeline.outbox.relay import Relay

AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class Delivered:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value


OnDelivery = Callable[[KafkaError | None, Delivered], None]


class FakeProducer:
    """Refuses the messages whose value is in `refuse`; reports only those, as librdkafka does with
    delivery.report.only.error."""

    def __init__(self, refuse: set[bytes]) -> None:
        self.refuse = refuse
        self.pending: list[tuple[bytes, OnDelivery]] = []

    def produce(self, topic: str, value: bytes, key: bytes, headers: list, on_delivery: OnDelivery) -> None:
        self.pending.append((value, on_delivery))

    def flush(self, _timeout: float) -> int:
        for value, on_delivery in self.pending:
            if value in self.refuse:
                on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), Delivered(value))
        self.pending.clear()
        return 0


def sent(position: int, aggregate: str) -> tuple[OutboxRow, Message]:
    row = OutboxRow(position, f"e{position}", "order", aggregate, "OrderUpdated", "{}", 1, 1, AT)
    return row, Message("t", aggregate.encode(), f"value of {position}".encode(), [])


def test_a_refused_message_is_found_by_its_value_and_blocks_its_aggregate() -> None:
    relay = Relay(load_settings())
    relay.producer = FakeProducer(refuse={b"value of 2"})
    to_send = [sent(1, "a"), sent(2, "b"), sent(3, "a"), sent(4, "b")]
    failed = relay._publish(to_send)
    assert failed == {2: KafkaError(KafkaError._MSG_TIMED_OUT).str()}
    assert settle(to_send, failed).acknowledged == [1, 3]  # 4 waits behind 2, as before


def test_nothing_refused_nothing_failed() -> None:
    relay = Relay(load_settings())
    relay.producer = FakeProducer(refuse=set())
    assert relay._publish([sent(1, "a"), sent(2, "b")]) == {}
