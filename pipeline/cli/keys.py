"""`nibble keys rotate [--batch N]`: a new data key, every sealed personal field re-encrypted under it."""

from __future__ import annotations

import argparse

from pipeline.config import Settings, data_key_path
from pipeline.errors import UsageError
from pipeline.privacy import keys
from pipeline.privacy.sealing import rotate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="the data keys of the personal fields sealed at rest")
    actions = parser.add_subparsers(dest="action", required=True)
    rotating = actions.add_parser(
        "rotate",
        help="a new current data key; every sealed field re-encrypted under it; the older keys retired",
        description="Add a new current key to the key file (NIBBLE_DATA_KEY_FILE, else the local stack's) and "
        "register it in the database of NIBBLE_DATABASE_URL (its superuser), then re-encrypt every sealed field "
        "under it in chunks by primary key, each table as its service login, and retire the older keys in the "
        "database. A rerun after a failure resumes. docs/security.md §8.",
    )
    rotating.add_argument("--batch", type=int, default=1000, help="rows per chunk, one transaction each (1000)")
    rotating.set_defaults(handler=run_rotate)


def run_rotate(args: argparse.Namespace, settings: Settings) -> int:
    if args.batch < 1:
        raise UsageError("--batch takes a positive number of rows")
    keys.load()  # the local stack's key file is generated on first use
    rotate(
        settings.endpoints.database_url, data_key_path(), args.batch, lambda line: print(f"[keys] {line}", flush=True)
    )
    return 0
