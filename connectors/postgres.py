"""PostgreSQL: connections and the SQL files kept beside the code."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import psycopg
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parent.parent / "pipeline" / "sql"


@cache
def _sql_text(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def schema_sql(name: str, schema: str, **fragments: sql.Composable) -> sql.Composed:
    """pipeline/sql/<name>.sql with `{schema}` bound to a quoted schema name (and any other fragments)."""
    return sql.SQL(_sql_text(name)).format(schema=sql.Identifier(schema), **fragments)


def connect(url: str, application_name: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=autocommit, application_name=application_name, connect_timeout=5)
