"""The query library's mechanics: documented files, bound parameters only, optional filters, the CLI.

Each query's answer is checked against PostgreSQL in tests/test_end_to_end.py, on ingested data; here the
queries run against the real Pinot to show that hostile input stays a value and that every output format
works.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from connectors.pinot import broker_connection
from pipeline.analytics.queries import GRAIN_COLUMN, PARAMETER, library, run_query
from pipeline.analytics.tables import apply
from pipeline.contract.codec import Codec
from pipeline.contract.rows import OutboxRow
from pipeline.errors import UsageError
from tests.support.ledger import ledger_rows
from tests.support.payloads import order_payload
from tests.support.polling import wait_until
from tests.support.services import Services

HOSTILE = "x' OR '1'='1"


def test_every_query_is_documented_and_takes_values_only_as_bound_parameters() -> None:
    queries = library()
    assert len(queries) >= 14
    for query in queries.values():
        assert query.description, f"{query.name}: no '-- ' description header"
        # No Python formatting holes or positional markers: every value is a named pyformat parameter.
        assert not re.search(r"\{\w*\}|%s|%d", query.sql), query.name
        grain = {"grain"} if GRAIN_COLUMN.search(query.sql) else set()  # names a column from a fixed mapping
        assert query.parameters == set(PARAMETER.findall(query.sql)) | grain


def test_optional_filters_are_kept_only_when_given() -> None:
    query = library()["active_orders"]
    assert "city = %(city)s" in query.render({"city": "Berlin"})
    assert "city" not in query.render({}).split("WHERE", 1)[1].split("GROUP BY")[0]


def _publish_order(services: Services, city: str) -> None:
    """One placed order in `city`, straight to Kafka as the relay would publish it: its order event and its
    order ledger entry."""
    order_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    payload = order_payload(
        order_id,
        now,
        restaurant_name="Quote's Kitchen",
        city=city,
        cuisine="pizza",
        item_count=1,
        subtotal_cents=1000,
        delivery_fee_cents=200,
        tip_cents=0,
        total_cents=1200,
    )
    row = OutboxRow(1, str(uuid.uuid4()), "order", order_id, "OrderPlaced", json.dumps(payload), 1, 1, now)
    codec = Codec()
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    for message in map(codec.encode, [row, *ledger_rows([payload], now)]):
        producer.produce(message.topic, message.value, message.key, headers=message.headers)
    producer.flush(30)


def test_a_hostile_value_is_a_value_not_sql(services: Services) -> None:
    apply(services.settings())
    city = f"O'Hare-{uuid.uuid4().hex[:8]}"  # a quote in a real value must match exactly, not break out
    _publish_order(services, city)
    cursor = broker_connection(services.pinot_broker_url).cursor()
    wait_until(lambda: run_query(cursor, "active_orders", city=city).rows != [], 60, what="the order in Pinot")
    assert run_query(cursor, "active_orders", city=city).rows == [[city, "placed", 1]]
    wait_until(lambda: run_query(cursor, "average_basket", city=city).rows != [], 60, what="its ledger entry")
    assert run_query(cursor, "average_basket", city=city).rows == [[city, 1000, 1.0, 1]]
    assert run_query(cursor, "active_orders").rows != []
    for name in ("active_orders", "top_restaurants", "funnel"):
        assert run_query(cursor, name, city=HOSTILE).rows == [], name


def test_a_missing_required_parameter_is_refused_before_pinot_is_asked(services: Services) -> None:
    cursor = broker_connection(services.pinot_broker_url).cursor()
    with pytest.raises(UsageError, match="needs lat, lon, radius_m"):
        run_query(cursor, "deliveries_within_radius")


@pytest.mark.parametrize("name", sorted(library()))
def test_every_query_runs_from_the_cli_in_every_format(services: Services, name: str) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    args = ["--since", (until - timedelta(days=30)).isoformat(), "--until", until.isoformat()]
    if "lat" in library()[name].parameters:
        args += ["--lat", "52.52", "--lon", "13.405", "--radius-m", "1500"]
    outputs = {}
    for fmt in ("table", "csv", "json"):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "query", name, *args, "--format", fmt],
            env={**os.environ, **services.environ()},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        outputs[fmt] = result.stdout
    rows = json.loads(outputs["json"])
    table = list(csv.reader(io.StringIO(outputs["csv"])))
    assert len(table) == len(rows) + 1
    assert outputs["table"].splitlines()[-1].startswith(f"({len(rows)} rows")
