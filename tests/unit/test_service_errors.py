"""Each connector's translation of its driver's failures: one line naming the service, its address (never a
password) and the setting to check; anything else passes through untouched."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack

import httpx
import pinotdb.exceptions
import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors import kafka, pinot, postgres, registry
from pipeline.errors import ServiceFailed

CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens there
Translation = Callable[[str, str], AbstractContextManager[None]]


@pytest.mark.parametrize(
    ("translation", "failure", "service"),
    [
        (postgres.errors, psycopg.OperationalError("connection refused"), "PostgreSQL"),
        (kafka.errors, KafkaException(KafkaError(KafkaError._TRANSPORT)), "Kafka"),
        (pinot.broker_errors, pinotdb.exceptions.DatabaseError("timed out"), "the Pinot broker"),
        (pinot.broker_errors, httpx.ConnectError("refused"), "the Pinot broker"),
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


@pytest.mark.parametrize(
    ("call", "setting"),
    [
        (lambda: pinot.Controller(CLOSED).schema("orders"), "NIBBLE_PINOT_CONTROLLER_URL"),
        (lambda: pinot.time_boundary(CLOSED, "orders"), "NIBBLE_PINOT_BROKER_URL"),  # httpx, as pinotdb
    ],
)
def test_each_pinot_call_fails_as_its_own_service(call: Callable[[], object], setting: str) -> None:
    """A refused connection is the controller's from the controller's client and the broker's from the broker's
    time boundary, never the other's (both translations are in force, as in the CLI)."""
    with pytest.raises(ServiceFailed) as raised, ExitStack() as translations:
        translations.enter_context(pinot.broker_errors(CLOSED, "NIBBLE_PINOT_BROKER_URL"))
        translations.enter_context(pinot.controller_errors(CLOSED, "NIBBLE_PINOT_CONTROLLER_URL"))
        call()
    assert setting in str(raised.value)
