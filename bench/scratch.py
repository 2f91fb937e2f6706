"""What the PostgreSQL benchmarks share: their command line's start and a migrated scratch database of their own."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from pipeline.config import load_settings
from tests.support.database import scratch_database


def parser(doc: str) -> argparse.ArgumentParser:
    """The benchmark's parser, described by the first line of its docstring, with --database-url."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--database-url", default=load_settings().endpoints.database_url, help="a superuser URL")
    return parser


@contextmanager
def scratch_connection(database_url: str, prefix: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a migrated scratch database, dropped afterwards."""
    with scratch_database(database_url, prefix, migrated=True) as url, psycopg.connect(url, autocommit=True) as conn:
        yield conn
