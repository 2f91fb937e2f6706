"""Scratch databases: the one way tests and benchmarks make a database of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from pipeline.migrate import migrate


def url_for(database_url: str, database: str) -> str:
    """`database_url` pointing at another database of the same server."""
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{database}"))


def refused(conn: psycopg.Connection, statement: sql.Composable | str) -> bool:
    """Whether PostgreSQL refuses the statement for want of a privilege (in a transaction of its own)."""
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


@contextmanager
def scratch_database(admin_url: str, prefix: str = "test", migrated: bool = False) -> Iterator[str]:
    """An empty database of its own (PostGIS available; with `migrated`, every migration applied), dropped
    afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = url_for(admin_url, name)
        if migrated:
            migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
