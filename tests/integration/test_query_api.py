"""The query library for notebooks (`run`) and its failures, against the real Pinot broker.

Each failure is one line naming the broker and the setting to change, with a non-zero exit from the CLI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pinotdb.exceptions
import pytest
from confluent_kafka import Producer

from connectors.pinot import broker_connection
from pipeline.analytics.queries import Column, failure, run
from pipeline.analytics.tables import apply
from pipeline.contract.codec import Codec
from pipeline.errors import QueryFailed
from tests.support.ledger import ledger_rows
from tests.support.polling import wait_until
from tests.support.services import Services


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nibble_query(services: Services, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "query", *args],
        env={**os.environ, **services.environ(), **env},
        capture_output=True,
        text=True,
    )


def _publish_placed_order(services: Services, city: str, placed_at: datetime) -> None:
    """The order ledger entry of one placed order, straight to Kafka as the relay would publish it."""
    order_id = str(uuid.uuid4())
    state = {
        "order_id": order_id,
        "restaurant_id": order_id,
        "restaurant_name": "Notebook Noodles",
        "city": city,
        "cuisine": "noodles",
        "placed_at": placed_at.isoformat(),
        "status": "placed",
        "item_count": 2,
        "subtotal_cents": 1000,
        "total_cents": 1234,
    }
    codec = Codec()
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    # Published now, as the relay would: an entry whose time lay below the order ledger's time boundary would
    # be read from the offline part only (docs/pinot.md, "Bounded by a window").
    for message in map(codec.encode, ledger_rows([state], datetime.now(UTC))):
        producer.produce(message.topic, message.value, message.key, headers=message.headers)
    producer.flush(30)


def test_run_answers_typed_columns_and_a_dataframe(services: Services) -> None:
    apply(services.settings())
    city = f"Notebook-{uuid.uuid4().hex[:8]}"
    placed_at = datetime.now(UTC) - timedelta(days=2)
    _publish_placed_order(services, city, placed_at)

    def answer() -> list[list]:
        return run("gmv_by_city", services.settings(), since="-7d", grain="day", city=city).rows

    wait_until(lambda: answer() != [], 60, what="the ledger entry in Pinot")
    day = placed_at.replace(hour=0, minute=0, second=0, microsecond=0)
    assert answer() == [[city, day, 1234, 1]]

    result = run("gmv_by_city", services.settings(), since="-7d", grain="day")
    assert result.columns == (
        Column("city", "text"),
        Column("period", "time"),
        Column("gmv_cents", "money"),
        Column("orders", "count"),
    )
    assert result.until is not None and result.since is not None
    # Over whole hours: since lowered to its hour, until raised to the next one.
    assert result.since.minute == result.until.minute == 0 and (result.until - result.since).days == 7
    assert [city, day, 1234, 1] in result.rows
    for city, period, gmv, orders in result.rows:
        assert isinstance(city, str) and isinstance(period, datetime) and period.tzinfo is not None
        assert isinstance(gmv, int) and isinstance(orders, int)
    frame = result.to_pandas()
    assert list(frame.columns) == ["city", "period", "gmv_cents", "orders"]
    assert len(frame) == len(result.rows)


def test_an_unreachable_broker_is_one_line_naming_its_setting(services: Services) -> None:
    broker = f"http://127.0.0.1:{_closed_port()}"
    answer = _nibble_query(services, "funnel", NIBBLE_PINOT_BROKER_URL=broker)
    assert answer.returncode != 0
    assert answer.stdout == ""
    assert answer.stderr.count("\n") == 1 and "Traceback" not in answer.stderr
    assert f"the Pinot broker at {broker} is unreachable" in answer.stderr
    assert "NIBBLE_PINOT_BROKER_URL" in answer.stderr


def test_a_query_over_its_time_is_one_line_naming_the_timeout_setting(services: Services) -> None:
    answer = _nibble_query(services, "funnel", "--since", "-7d", NIBBLE_PINOT_QUERY_TIMEOUT_MS="1")
    assert answer.returncode != 0
    assert answer.stderr == (
        f"nibble query: the Pinot broker at {services.pinot_broker_url} did not answer query funnel within "
        "NIBBLE_PINOT_QUERY_TIMEOUT_MS=1 ms; raise it or narrow the window\n"
    )


def test_an_unknown_column_as_the_real_broker_reports_it(services: Services) -> None:
    cursor = broker_connection(services.pinot_broker_url).cursor()
    with pytest.raises(pinotdb.exceptions.DatabaseError) as raised:
        cursor.execute("SELECT no_such_column FROM orders LIMIT 1")
    errors = cursor.raw_query_response["response"]["exceptions"]
    message = str(failure(raised.value, errors, "funnel", services.pinot_broker_url, 10000))
    assert "Unknown columnName 'no_such_column' found in the query" in message
    assert "nibble pinot apply" in message and "\n" not in message


def test_run_raises_the_library_error_not_the_client_library_s(services: Services) -> None:
    settings = services.settings().model_copy(deep=True)
    settings.endpoints.pinot_broker_url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(QueryFailed, match="NIBBLE_PINOT_BROKER_URL"):
        run("active_orders", settings)
