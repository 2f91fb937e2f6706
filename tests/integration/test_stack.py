"""The real services answer: PostgreSQL with PostGIS, Kafka with an idempotent producer, Pinot over Avro."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import fastavro
import psycopg
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pinotdb import connect as pinot_connect

from tests.support.services import Services

NIBBLE = [sys.executable, "-m", "pipeline"]


def test_postgres_round_trip_with_postgis(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        # Amsterdam Centraal to Dam Square, about 750 m on the spheroid.
        (metres,) = conn.execute(
            "SELECT ST_Distance(ST_GeogFromText('POINT(4.9003 52.3791)'), ST_GeogFromText('POINT(4.8932 52.3731)'))"
        ).fetchone()
        (wal_level,) = conn.execute("SHOW wal_level").fetchone()
    assert 700 < metres < 900
    assert wal_level == "logical"


def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)


def test_kafka_round_trip_idempotent_producer(services: Services) -> None:
    topic = f"test.stack.{uuid.uuid4().hex[:8]}"
    _create_topic(services.kafka_bootstrap, topic)
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    acked: list[str] = []
    for i in range(100):
        producer.produce(
            topic,
            key=f"k{i % 7}",
            value=f"v{i}",
            on_delivery=lambda err, msg: acked.append(msg.value().decode()) if err is None else None,
        )
    assert producer.flush(30) == 0
    assert len(acked) == 100

    consumer = Consumer(
        {
            "bootstrap.servers": services.kafka_bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[str] = []
    deadline = time.monotonic() + 30
    while len(received) < 100 and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and message.error() is None:
            received.append(message.value().decode())
    consumer.close()
    assert received == [f"v{i}" for i in range(100)]


KAFKA_CONSUMER_FACTORY = "org.apache.pinot.plugin.stream.kafka20.KafkaConsumerFactory"
AVRO_DECODER = "org.apache.pinot.plugin.inputformat.avro.SimpleAvroMessageDecoder"
AVRO_SCHEMA = {
    "type": "record",
    "name": "StackProbe",
    "namespace": "nibble.test",
    "fields": [
        {"name": "probe_id", "type": "string"},
        {"name": "city", "type": "string"},
        {"name": "amount_cents", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def test_pinot_realtime_table_ingests_avro_from_kafka(services: Services) -> None:
    table = f"stack_probe_{uuid.uuid4().hex[:8]}"
    topic = f"test.{table}"
    _create_topic(services.kafka_bootstrap, topic)
    controller = services.pinot_controller_url
    schema = {
        "schemaName": table,
        "dimensionFieldSpecs": [
            {"name": "probe_id", "dataType": "STRING"},
            {"name": "city", "dataType": "STRING"},
        ],
        "metricFieldSpecs": [{"name": "amount_cents", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [
            {
                "name": "ts",
                "dataType": "LONG",
                "format": "1:MILLISECONDS:EPOCH",
                "granularity": "1:MILLISECONDS",
            }
        ],
    }
    table_config = {
        "tableName": table,
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "schemaName": table, "replicasPerPartition": "1"},
        "tenants": {},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            "streamConfigs": {
                "streamType": "kafka",
                "stream.kafka.topic.name": topic,
                "stream.kafka.broker.list": services.kafka_bootstrap,
                "stream.kafka.consumer.type": "lowlevel",
                "stream.kafka.consumer.factory.class.name": KAFKA_CONSUMER_FACTORY,
                "stream.kafka.decoder.class.name": AVRO_DECODER,
                "stream.kafka.decoder.prop.schema": json.dumps(AVRO_SCHEMA),
                "stream.kafka.consumer.prop.auto.offset.reset": "smallest",
                "realtime.segment.flush.threshold.rows": "10000",
            },
        },
        "metadata": {},
    }
    requests.post(f"{controller}/schemas", json=schema, timeout=30).raise_for_status()
    requests.post(f"{controller}/tables", json=table_config, timeout=30).raise_for_status()
    try:
        records = [
            {
                "probe_id": f"p{i}",
                "city": ["amsterdam", "berlin"][i % 2],
                "amount_cents": 1000 + i,
                "ts": 1_790_000_000_000 + i,
            }
            for i in range(50)
        ]
        parsed = fastavro.parse_schema(AVRO_SCHEMA)
        producer = Producer({"bootstrap.servers": services.kafka_bootstrap, "enable.idempotence": True})
        for record in records:
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, parsed, record)
            producer.produce(topic, key=record["probe_id"], value=buffer.getvalue())
        assert producer.flush(30) == 0

        broker = services.pinot_broker_url.removeprefix("http://")
        host, port = broker.rsplit(":", 1)
        cursor = pinot_connect(host=host, port=int(port), path="/query/sql", scheme="http").cursor()
        deadline = time.monotonic() + 60
        rows: list[tuple] = []
        while time.monotonic() < deadline:
            cursor.execute(
                f"SELECT city, COUNT(*), SUM(amount_cents), MAX(ts) FROM {table} GROUP BY city ORDER BY city"
            )
            rows = cursor.fetchall()
            if sum(row[1] for row in rows) == 50:
                break
            time.sleep(0.5)
        assert rows == [
            ["amsterdam", 25, sum(1000 + i for i in range(0, 50, 2)), 1_790_000_000_048],
            ["berlin", 25, sum(1000 + i for i in range(1, 50, 2)), 1_790_000_000_049],
        ]
    finally:
        requests.delete(f"{controller}/tables/{table}?type=realtime", timeout=30)
        requests.delete(f"{controller}/schemas/{table}", timeout=30)
        AdminClient({"bootstrap.servers": services.kafka_bootstrap}).delete_topics([topic])


def _nibble(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NIBBLE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_stack_status_reports_every_service_healthy(services: Services) -> None:
    result = _nibble("stack", "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["service"] for row in rows] == [
        "postgres",
        "kafka",
        "zookeeper",
        "pinot-controller",
        "pinot-broker",
        "pinot-server",
        "pinot-minion",
        "schema-registry",
        "redis",
        "superset",
    ]
    assert all(row["healthy"] and row["pid"] for row in rows)


def test_second_stack_up_is_a_no_op(services: Services) -> None:
    before = json.loads(_nibble("stack", "status", "--json").stdout)
    result = _nibble("stack", "up")
    assert result.returncode == 0, result.stderr
    assert "starting" not in result.stdout and "installing" not in result.stdout  # no pip run for Superset
    assert result.stdout.count("already running") == len(before)
    after = json.loads(_nibble("stack", "status", "--json").stdout)
    assert [row["pid"] for row in after] == [row["pid"] for row in before]


def test_taken_port_gives_a_clear_error(services: Services, tmp_path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _nibble("stack", "up", env={"NIBBLE_STATE_DIR": str(tmp_path), "NIBBLE_POSTGRES_PORT": str(port)})
    assert result.returncode == 1
    assert f"port {port} is already taken" in result.stderr
    assert "NIBBLE_POSTGRES_PORT" in result.stderr


def test_invalid_setting_is_named_at_start() -> None:
    result = _nibble("stack", "status", env={"NIBBLE_KAFKA_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "NIBBLE_KAFKA_PORT" in result.stderr
