"""`nibble`: one console script, a sub-command per concern; argparse and printing only.

Each command module exposes `register(subparsers)`, which adds its parser and sets `handler`, a function
`(args, settings) -> exit code`. `main` is the one funnel for failures: a NibbleError, or a service that
does not answer, becomes one line on stderr naming what to check, and a non-zero exit (`--debug` shows
the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

import httpx
import pinotdb.exceptions
import psycopg
import requests
from confluent_kafka import KafkaException

from connectors.pinot import ControllerError
from connectors.registry import RegistryError
from pipeline.config import Settings, load_settings
from pipeline.errors import NibbleError, ServiceFailed, redact


def command_modules() -> list[ModuleType]:
    names = ["migrate", "schemas", "relay", "dlq", "backfill", "pinot", "query", "dashboards", "verify", "trace"]
    # The relay's image ships without the development stack (see Dockerfile): its commands exist beside it only.
    if importlib.util.find_spec("pipeline.devstack") is not None:
        names = ["stack", *names, "generate", "demo"]
    return [importlib.import_module(f"pipeline.cli.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nibble", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in command_modules():
        module.register(subparsers)
    return parser


def explain(exc: Exception, settings: Settings) -> NibbleError | None:
    """A client library's failure to reach a service, as a NibbleError naming the service and its setting."""
    e = settings.endpoints
    if isinstance(exc, psycopg.OperationalError):
        return ServiceFailed("PostgreSQL", redact(e.database_url), "NIBBLE_DATABASE_URL", str(exc))
    if isinstance(exc, KafkaException):
        return ServiceFailed("Kafka", e.kafka_bootstrap_servers, "NIBBLE_KAFKA_BOOTSTRAP_SERVERS", str(exc))
    if isinstance(exc, pinotdb.exceptions.Error | httpx.HTTPError):
        return ServiceFailed("the Pinot broker", e.pinot_broker_url, "NIBBLE_PINOT_BROKER_URL", str(exc))
    if isinstance(exc, RegistryError):
        return ServiceFailed("the schema registry", e.schema_registry_url, "NIBBLE_SCHEMA_REGISTRY_URL", str(exc))
    if isinstance(exc, requests.RequestException | ControllerError):
        return ServiceFailed("the Pinot controller", e.pinot_controller_url, "NIBBLE_PINOT_CONTROLLER_URL", str(exc))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # pinotdb logs every query it sends
    try:
        settings = load_settings()
        return args.handler(args, settings)
    except Exception as exc:
        if args.debug:
            raise
        known = exc if isinstance(exc, NibbleError) else explain(exc, settings)
        if known is None:
            raise
        print(f"nibble {args.command}: {known}", file=sys.stderr)
        return known.exit_code
    except KeyboardInterrupt:
        return 130
