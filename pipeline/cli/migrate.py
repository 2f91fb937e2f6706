"""`nibble migrate [--status]`."""

from __future__ import annotations

import argparse

from pipeline import migrate
from pipeline.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="apply the numbered SQL migrations to PostgreSQL")
    parser.add_argument("--status", action="store_true", help="list applied and pending migrations")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.status:
        print("\n".join(migrate.status(settings.endpoints.database_url)))
        return 0
    names = migrate.migrate(settings.endpoints.database_url)
    print("\n".join(f"applied  {name}" for name in names) if names else "up to date")
    return 0
