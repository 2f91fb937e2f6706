"""PostgreSQL: connections and the SQL files kept beside the code."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

SQL_DIR = Path(__file__).resolve().parent.parent / "pipeline" / "sql"


@cache
def _sql_text(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def schema_sql(name: str, schema: str, **fragments: sql.Composable) -> sql.Composed:
    """pipeline/sql/<name>.sql with `{schema}` bound to a quoted schema name (and any other fragments)."""
    return sql.SQL(_sql_text(name)).format(schema=sql.Identifier(schema), **fragments)


def connect(url: str, application_name: str, autocommit: bool = True) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=autocommit, application_name=application_name, connect_timeout=5)
    # JSON numbers stay exact either way (ints as int); orjson parses payloads ~4x faster than json.
    set_json_loads(orjson.loads, conn)
    return conn
