"""The migrations runner (`nibble migrate`): apply the numbered SQL files of `migrations/` in order, once each.

Applied files are recorded in `public.schema_migrations` with the SHA-256 of their text; a recorded file
whose text has changed since is refused, never re-run. Each file runs in its own transaction, and a
session advisory lock keeps two concurrent runs against one database from racing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from connectors import postgres
from pipeline.errors import NibbleError
from pipeline.resources import MIGRATIONS

FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key shared by every `nibble migrate` ("nibble" in ASCII).
LOCK_KEY = 0x6E6962626C65

VERSION_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(NibbleError):
    """The migrations on disk and those recorded in the database disagree, or a file is misnamed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name, e.g. 0003_user_service.sql
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime


def discover(directory: Path = MIGRATIONS) -> list[Migration]:
    """The migration files of `directory`, by version; a misnamed .sql file or a repeated version fails."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_words.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path.name} and {migrations[version].name} share version {version}")
        migrations[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [migrations[version] for version in sorted(migrations)]


def _applied(conn: psycopg.Connection) -> dict[int, Applied]:
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at FROM public.schema_migrations ORDER BY version"
    ).fetchall()
    return {row[0]: Applied(*row) for row in rows}


def _check_applied(migrations: list[Migration], applied: dict[int, Applied]) -> None:
    """Refuse when an applied migration was edited, renamed or removed since it was applied."""
    on_disk = {migration.version: migration for migration in migrations}
    for version, record in applied.items():
        migration = on_disk.get(version)
        if migration is None:
            raise MigrationError(
                f"{record.name} is recorded as applied but its file is missing; "
                "restore it (or roll it back as docs/migrations.md describes)"
            )
        if migration.name != record.name:
            raise MigrationError(f"{record.name} was applied but is now named {migration.name}")
        if migration.checksum != record.checksum:
            raise MigrationError(
                f"{migration.name} changed after it was applied (checksum {record.checksum[:12]} recorded, "
                f"{migration.checksum[:12]} on disk); restore the file and put the change in a new migration"
            )


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    """Run one file and record it, in one transaction: a failure leaves neither behind."""
    try:
        with conn.transaction():
            # No parameters: psycopg sends the file as one simple query, so it may hold many statements.
            conn.execute(migration.sql.encode())
            # A file may `SET LOCAL ROLE` to its schema's owner; record it as ourselves.
            conn.execute("RESET ROLE")
            conn.execute(
                "INSERT INTO public.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as exc:
        raise MigrationError(f"{migration.name} failed and was rolled back: {exc}") from exc


def migrate(database_url: str, directory: Path = MIGRATIONS) -> list[str]:
    """Apply the pending migrations in order; returns the names of those applied (empty when up to date)."""
    migrations = discover(directory)
    applied_now: list[str] = []
    with postgres.connect(database_url, "nibble-migrate") as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(VERSION_TABLE_DDL)
            applied = _applied(conn)
            _check_applied(migrations, applied)
            for migration in migrations:
                if migration.version in applied:
                    continue
                _apply(conn, migration)
                applied_now.append(migration.name)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def status(database_url: str, directory: Path = MIGRATIONS) -> list[str]:
    """One line per migration: applied (with when), pending, changed since applied, or missing on disk."""
    migrations = discover(directory)
    with postgres.connect(database_url, "nibble-migrate") as conn:
        exists = conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
    lines = []
    for migration in migrations:
        record = applied.pop(migration.version, None)
        if record is None:
            lines.append(f"pending  {migration.name}")
        elif record.checksum != migration.checksum or record.name != migration.name:
            lines.append(f"CHANGED  {migration.name} (applied {record.applied_at:%Y-%m-%d %H:%M:%S%z})")
        else:
            lines.append(f"applied  {migration.name} ({record.applied_at:%Y-%m-%d %H:%M:%S%z})")
    lines.extend(f"MISSING  {record.name} (applied, file not found)" for record in applied.values())
    return lines
