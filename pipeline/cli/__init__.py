"""`nibble`: one console script, a sub-command per concern; argparse and printing only.

Each command module exposes `register(subparsers)`, which adds its parser and sets `handler`, a function
`(args, settings) -> exit code`. `main` is the one funnel for failures: a NibbleError becomes one line on
stderr naming what to check, and a non-zero exit (`--debug` shows the traceback instead). A service that does
not answer is a NibbleError too: each connector translates its own driver's failures (`service_errors`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from types import ModuleType

from connectors import kafka, postgres, registry
from connectors.pinot import broker_errors, controller_errors  # pipeline.cli.pinot takes the name `pinot`
from pipeline.config import Endpoints, load_settings
from pipeline.errors import NibbleError


def command_modules() -> list[ModuleType]:
    names = ["migrate", "schemas", "relay", "dlq", "backfill", "pinot", "query", "dashboards", "verify", "trace"]
    names += ["keys", "forget"]
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


def service_errors(e: Endpoints) -> ExitStack:
    """Each connector's translation of its driver's failures, pointed at the setting that names the service."""
    stack = ExitStack()
    stack.enter_context(postgres.errors(e.database_url, "NIBBLE_DATABASE_URL"))
    stack.enter_context(kafka.errors(e.kafka_bootstrap_servers, "NIBBLE_KAFKA_BOOTSTRAP_SERVERS"))
    stack.enter_context(broker_errors(e.pinot_broker_url, "NIBBLE_PINOT_BROKER_URL"))
    stack.enter_context(registry.errors(e.schema_registry_url, "NIBBLE_SCHEMA_REGISTRY_URL"))
    stack.enter_context(controller_errors(e.pinot_controller_url, "NIBBLE_PINOT_CONTROLLER_URL"))
    return stack


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # pinotdb logs every query it sends
    try:
        settings = load_settings()
        with service_errors(settings.endpoints):
            return args.handler(args, settings)
    except NibbleError as exc:
        if args.debug:
            raise
        print(f"nibble {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
