"""`nibble`: one console script, a sub-command per concern.

Each command module exposes `register(subparsers)`, which adds its parsers and sets `handler`, a function
`(args, settings) -> exit code`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline import demo, dlq, generator, migrate, pinot_tables, queries, relay, stack
from pipeline.config import ConfigError, load_settings

COMMAND_MODULES = [stack, migrate, relay, dlq, pinot_tables, generator, queries, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nibble", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # pinotdb logs every query it sends
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"nibble: {exc}", file=sys.stderr)
        return 2
    return args.handler(args, settings)
