"""Each connector's translation of its driver's failures: one line naming the service, its address (never a
password) and the setting to check; anything else passes through untouched."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pinotdb.exceptions
import psycopg
import pytest
import requests
from confluent_kafka import KafkaError, KafkaException

from connectors import kafka, pinot, postgres, registry
from pipeline.errors import ServiceFailed

Translation = Callable[[str, str], AbstractContextManager[None]]


@pytest.mark.parametrize(
    ("translation", "failure", "service"),
    [
        (postgres.errors, psycopg.OperationalError("connection refused"), "PostgreSQL"),
        (kafka.errors, KafkaException(KafkaError(KafkaError._TRANSPORT)), "Kafka"),
        (pinot.broker_errors, pinotdb.exceptions.DatabaseError("timed out"), "the Pinot broker"),
        (pinot.broker_errors, httpx.ConnectError("refused"), "the Pinot broker"),
        (pinot.controller_errors, requests.ConnectionError("refused"), "the Pinot controller"),
        (pinot.controller_errors, pinot.ControllerError("GET /tables: HTTP 500"), "the Pinot controller"),
        (registry.errors, registry.RegistryError("refused"), "the schema registry"),
    ],
)
def test_a_driver_failure_is_one_line_naming_service_and_setting(
    translation: Translation, failure: Exception, service: str
) -> None:
    with pytest.raises(ServiceFailed) as raised, translation("http://127.0.0.1:9", "NIBBLE_SOME_URL"):
        raise failure
    message = str(raised.value)
    assert message.startswith(f"{service} at http://127.0.0.1:9: ")
    assert "NIBBLE_SOME_URL" in message and "\n" not in message
    assert raised.value.__cause__ is failure  # --debug shows the driver's own traceback too


def test_the_database_password_is_never_shown() -> None:
    with (
        pytest.raises(ServiceFailed) as raised,
        postgres.errors("postgresql://u:secret@db:5432/x", "NIBBLE_DATABASE_URL"),
    ):
        raise psycopg.OperationalError("refused")
    assert "secret" not in str(raised.value) and "u:***@db:5432" in str(raised.value)


def test_other_failures_pass_through() -> None:
    with pytest.raises(psycopg.errors.UndefinedTable), postgres.errors("postgresql://db/x", "NIBBLE_DATABASE_URL"):
        raise psycopg.errors.UndefinedTable("no such table")
