"""Database sessions that hold the data keys, and the rotation that re-encrypts every sealed row.

Migration 0023's triggers seal the personal fields with the keys of the writing session (`nibble.data_keys`,
set here with a bind parameter) and refuse, in one line, a session without them or with other keys than the
database registered. `use_keys` runs that check before a writer's first statement.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from connectors import postgres
from connectors.postgres import sql_file
from pipeline.config import login_url
from pipeline.errors import NibbleError
from pipeline.privacy import keys
from pipeline.privacy.keys import Keyring

KEY_ERROR = "NBK01"  # the SQLSTATE of 0023's key checks


@dataclass(frozen=True)
class SealedTable:
    schema: str  # also the service login that writes it
    table: str
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


# 0023's triggers, table by table.
SEALED = (
    SealedTable("user_service", "users", ("email", "phone", "full_name")),
    SealedTable("user_service", "addresses", ("line1", "line2")),
    SealedTable("driver_service", "drivers", ("full_name", "phone", "license_plate")),
    SealedTable("restaurant_service", "restaurants", ("phone",)),
    SealedTable("order_service", "payments", ("provider_reference",)),
)
SEALING_SERVICES = tuple(dict.fromkeys(table.schema for table in SEALED))


class DataKeyError(NibbleError):
    """The data key is missing, wrong, or not the database's current one; nothing was written."""


@contextmanager
def key_errors() -> Iterator[None]:
    """0023's refusals as a one-line DataKeyError."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate == KEY_ERROR:
            raise DataKeyError(exc.diag.message_primary or str(exc)) from None
        raise


def use_keys(conn: psycopg.Connection, ring: Keyring) -> None:
    """Give the session the keys and check them against the database, registering them on its first use.
    Outside autocommit, commit at once: the setting is the session's only once committed, and a first use's
    registration holds a lock that every other session's check waits for until then."""
    with key_errors():
        conn.execute("SELECT set_config('nibble.data_keys', %s, false)", (ring.setting,))
        conn.execute("SELECT public.check_data_keys()")


def _pending(table: SealedTable) -> sql.Composable:
    return sql.SQL(" OR ").join(
        sql.SQL("({column} IS NOT NULL AND {column} NOT LIKE %(sealed)s)").format(column=sql.Identifier(column))
        for column in table.columns
    )


def pending_rows(conn: psycopg.Connection, table: SealedTable, current: str) -> int:
    """Rows of `table` with a value not sealed under the key `current` (older keys, or written before 0023)."""
    query = sql_file(
        "pipeline.privacy", "pending_count", table=sql.Identifier(table.schema, table.table), pending=_pending(table)
    )
    return conn.execute(query, {"sealed": f"enc:{current}:%"}).fetchone()[0]


def reseal(
    database_url: str, table: SealedTable, ring: Keyring, batch_size: int, progress: Callable[[str], None]
) -> int:
    """Seal every value of `table` not under the ring's current key again, in chunks by id, each its own short
    transaction as the table's service login; returns the rows re-encrypted."""
    query = sql_file(
        "pipeline.privacy",
        "reseal_chunk",
        table=sql.Identifier(table.schema, table.table),
        assignments=sql.SQL(", ").join(
            sql.SQL("{column} = t.{column}").format(column=sql.Identifier(column)) for column in table.columns
        ),
        pending=_pending(table),
    )
    done, after = 0, uuid.UUID(int=0)
    with postgres.connect(login_url(database_url, table.schema), "nibble-keys") as conn:
        use_keys(conn, ring)
        total = pending_rows(conn, table, ring.current)
        while total:
            with key_errors(), conn.transaction():
                # A re-encryption changes no updated_at and no order's payment status (0023).
                conn.execute("SELECT set_config('nibble.rekeying', 'on', true)")
                ids = [
                    row[0]
                    for row in conn.execute(
                        query, {"after": after, "limit": batch_size, "sealed": f"enc:{ring.current}:%"}
                    )
                ]
            if not ids:
                break
            done, after = done + len(ids), max(ids)
            progress(f"{table.name}: {done} of {total} rows sealed under {ring.current}")
    return done


def rotate(database_url: str, path: Path, batch_size: int, progress: Callable[[str], None]) -> Keyring:
    """Key rotation (docs/security.md §8): a new current key in the key file and the database, every sealed row
    re-encrypted under it, the older keys retired in the database. A rerun after a failure resumes: it adds no
    key while rows are still sealed under an older one, or while the file's current key is not registered.
    `database_url` is the superuser's (registering a key is a step of deployment, like `nibble migrate`)."""
    ring = keys.load(path)
    with postgres.connect(database_url, "nibble-keys") as admin, key_errors():
        admin.execute("SET log_parameter_max_length = 0")  # the secrets are bind parameters
        admin.execute("SELECT set_config('nibble.data_keys', %s, false)", (ring.setting,))
        admin.execute("SELECT public.register_first_data_keys()")  # a database no writer has used yet
        registered = dict(admin.execute(sql_file("pipeline.privacy", "newest_key")).fetchall())
        newest = next(key_id for key_id, current in registered.items() if current)
        for key_id in ["lookup", *(key_id for key_id, _ in ring.keys if key_id in registered)]:
            admin.execute("SELECT public.data_key_secret(%s)", (key_id,))  # a wrong key file stops here
        if ring.current == newest and not any(pending_rows(admin, table, newest) for table in SEALED):
            ring = ring.rotated(secrets.token_urlsafe(32))
            keys.save(path, ring)
            progress(f"{ring.current} added to {path}")
        elif ring.current in registered and ring.current != newest:
            raise DataKeyError(f"{path}: its current key {ring.current} is older than the database's {newest}")
        key_id, secret = ring.keys[0]
        admin.execute(sql_file("pipeline.privacy", "register_key"), {"key_id": key_id, "secret": secret})
        use_keys(admin, ring)
        progress(f"{ring.current} is the database's current key")
    for table in SEALED:
        reseal(database_url, table, ring, batch_size, progress)
    with postgres.connect(database_url, "nibble-keys") as admin:
        left = sum(pending_rows(admin, table, ring.current) for table in SEALED)
        if left:  # a writer still holding an older key file wrote meanwhile (0023 refuses that): rerun
            raise DataKeyError(f"{left} rows are still sealed under an older key: run `nibble keys rotate` again")
        retired = [
            row[0] for row in admin.execute(sql_file("pipeline.privacy", "retire_keys"), {"current": ring.current})
        ]
    if retired:
        progress(
            f"{', '.join(retired)} no longer needed by this database: remove their lines from {path} once no "
            "other database uses them"
        )
    return ring
