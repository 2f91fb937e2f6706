"""PostgreSQL: connections, their failures as one line, and SQL kept in .sql files beside the code that runs it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files

import psycopg
from psycopg import sql

from pipeline.errors import ServiceFailed, redact


def connect(url: str, application_name: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=autocommit, application_name=application_name, connect_timeout=5)


@contextmanager
def errors(url: str, setting: str) -> Iterator[None]:
    """PostgreSQL out of reach (refused, gone, a login refused) as a ServiceFailed naming its address, without
    the password, and `setting`. Opt-in: the relay catches the driver's own error to reconnect."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise ServiceFailed("PostgreSQL", redact(url), setting, str(exc)) from exc


@cache
def _sql_text(package: str, name: str) -> str:
    return (files(package) / "sql" / f"{name}.sql").read_text(encoding="utf-8")


def sql_file(package: str, name: str, **fragments: sql.Composable) -> sql.Composed:
    """`<package>/sql/<name>.sql` with its `{placeholders}` bound to the given fragments (e.g. quoted names)."""
    return sql.SQL(_sql_text(package, name)).format(**fragments)
