"""`nibble migrate` and the schema it builds, against the real PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from pipeline.migrate import MigrationError, discover, migrate, status
from pipeline.resources import MIGRATIONS
from tests.support.data_keys import hold_keys

ALL_MIGRATIONS = [path.name for path in sorted(MIGRATIONS.glob("*.sql"))]


def copy_migrations(target: Path, count: int | None = None) -> Path:
    target.mkdir()
    for name in ALL_MIGRATIONS[:count]:
        shutil.copy(MIGRATIONS / name, target / name)
    return target


def test_migrate_applies_every_file_in_order_then_is_a_no_op(fresh_database: str) -> None:
    assert migrate(fresh_database) == ALL_MIGRATIONS
    assert migrate(fresh_database) == []

    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT version, name, checksum FROM public.schema_migrations ORDER BY version")
        recorded = rows.fetchall()
    expected = [
        (int(name[:4]), name, hashlib.sha256((MIGRATIONS / name).read_bytes()).hexdigest()) for name in ALL_MIGRATIONS
    ]
    assert recorded == expected


def test_an_edited_applied_migration_is_refused(fresh_database: str, tmp_path: Path) -> None:
    directory = copy_migrations(tmp_path / "migrations")
    migrate(fresh_database, directory)
    edited = directory / ALL_MIGRATIONS[2]
    edited.write_text(edited.read_text() + "\nCREATE TABLE user_service.sneaky (id int);\n")
    new = directory / "9999_later.sql"
    new.write_text("CREATE TABLE public.later (id int);")

    with pytest.raises(MigrationError, match=f"{re.escape(ALL_MIGRATIONS[2])} changed after it was applied"):
        migrate(fresh_database, directory)

    with psycopg.connect(fresh_database) as conn:
        created = conn.execute("SELECT to_regclass('user_service.sneaky'), to_regclass('public.later')").fetchone()
    assert created == (None, None), "nothing runs once a checksum mismatch is found"
    assert f"CHANGED  {ALL_MIGRATIONS[2]}" in "\n".join(status(fresh_database, directory))


def test_a_failing_migration_is_rolled_back_and_named(fresh_database: str, tmp_path: Path) -> None:
    directory = copy_migrations(tmp_path / "migrations")
    (directory / "9999_broken.sql").write_text("CREATE TABLE public.half_done (id int);\nSELECT 1 / 0;\n")
    with pytest.raises(MigrationError, match=r"9999_broken\.sql failed and was rolled back"):
        migrate(fresh_database, directory)

    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT to_regclass('public.half_done')").fetchone() == (None,)
        versions = conn.execute("SELECT max(version) FROM public.schema_migrations").fetchone()
    assert versions == (int(ALL_MIGRATIONS[-1][:4]),), "the files before it stay applied"


def test_status_lists_applied_and_pending(fresh_database: str, tmp_path: Path) -> None:
    assert status(fresh_database) == [f"pending  {name}" for name in ALL_MIGRATIONS]

    migrate(fresh_database, copy_migrations(tmp_path / "first_three", count=3))
    lines = status(fresh_database)
    assert [line.split()[0] for line in lines] == ["applied"] * 3 + ["pending"] * (len(ALL_MIGRATIONS) - 3)
    assert [line.split()[1] for line in lines] == ALL_MIGRATIONS


def test_cli_migrate_and_status(fresh_database: str) -> None:
    env = {**os.environ, "NIBBLE_DATABASE_URL": fresh_database}
    command = [sys.executable, "-m", "pipeline", "migrate"]

    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == [word for name in ALL_MIGRATIONS for word in ("applied", name)]
    again = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "up to date"
    listed = subprocess.run([*command, "--status"], env=env, capture_output=True, text=True, check=True)
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [["applied", name] for name in ALL_MIGRATIONS]


def test_concurrent_runs_apply_each_file_once(fresh_database: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(fresh_database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(results, key=len) == [[], [], ALL_MIGRATIONS]


def test_discover_refuses_misnamed_files(tmp_path: Path) -> None:
    (tmp_path / "1_no_padding.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lowercase_words\.sql"):
        discover(tmp_path)


SUPPORT_TICKETS = [
    # column, data_type, character_maximum_length, is_nullable, column_default
    ("id", "uuid", None, "NO", "uuid_generate_v4()"),
    ("user_id", "uuid", None, "NO", None),
    ("order_id", "uuid", None, "YES", None),
    ("subject", "character varying", 255, "NO", None),
    ("description", "text", None, "NO", None),
    ("status", "character varying", 50, "YES", "'open'::character varying"),
    ("priority", "character varying", 50, "YES", "'medium'::character varying"),
    ("assigned_to", "uuid", None, "YES", None),
    ("resolved_at", "timestamp with time zone", None, "YES", None),
    ("resolution_notes", "text", None, "YES", None),
    ("created_at", "timestamp with time zone", None, "YES", "CURRENT_TIMESTAMP"),
    ("updated_at", "timestamp with time zone", None, "YES", "CURRENT_TIMESTAMP"),
    ("customer_pseudonym", "uuid", None, "YES", None),  # not the seed's: 0027 adds it (docs/security.md §9)
]
TICKET_COMMENTS = [
    ("id", "uuid", None, "NO", "uuid_generate_v4()"),
    ("ticket_id", "uuid", None, "YES", None),
    ("user_id", "uuid", None, "NO", None),
    ("comment", "text", None, "NO", None),
    ("is_internal", "boolean", None, "YES", "false"),
    ("created_at", "timestamp with time zone", None, "YES", "CURRENT_TIMESTAMP"),
]


def test_seed_support_ticket_tables_exist_as_written(fresh_database: str) -> None:
    migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:

        def columns(table: str) -> list[tuple[object, ...]]:
            return conn.execute(
                """
                SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
                FROM information_schema.columns
                WHERE table_schema = 'admin_service' AND table_name = %s
                ORDER BY ordinal_position
                """,
                (table,),
            ).fetchall()

        assert columns("support_tickets") == SUPPORT_TICKETS
        assert columns("ticket_comments") == TICKET_COMMENTS

        primary_keys = conn.execute(
            """
            SELECT tc.table_name, kcu.column_name
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
            WHERE tc.table_schema = 'admin_service' AND tc.constraint_type = 'PRIMARY KEY'
              AND tc.table_name IN ('support_tickets', 'ticket_comments')  -- the seed's (0025 adds an outbox)
            ORDER BY 1
            """
        ).fetchall()
        assert primary_keys == [("support_tickets", "id"), ("ticket_comments", "id")]

        foreign_key = conn.execute(
            """
            SELECT kcu.column_name, ccu.table_name, ccu.column_name, rc.delete_rule
            FROM information_schema.referential_constraints rc
            JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
            JOIN information_schema.constraint_column_usage ccu USING (constraint_schema, constraint_name)
            WHERE rc.constraint_schema = 'admin_service'
            """
        ).fetchall()
        assert foreign_key == [("ticket_id", "support_tickets", "id", "CASCADE")]

        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'admin_service' "
            "AND indexname = 'ticket_comments_ticket_id_idx'"
        ).fetchone()
        assert index is not None and index[0].endswith("USING btree (ticket_id)")


def test_foreign_keys_stay_inside_their_service_schema(fresh_database: str) -> None:
    migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:
        crossing = conn.execute(
            """
            SELECT conrelid::regclass::text, confrelid::regclass::text
            FROM pg_constraint c
            JOIN pg_class child ON child.oid = c.conrelid
            JOIN pg_class parent ON parent.oid = c.confrelid
            WHERE c.contype = 'f' AND child.relnamespace <> parent.relnamespace
            """
        ).fetchall()
        foreign_keys = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()
    assert crossing == []
    assert foreign_keys is not None and foreign_keys[0] >= 10


def test_every_geography_column_has_a_gist_index(fresh_database: str) -> None:
    migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:
        geography_columns = conn.execute(
            """
            SELECT table_schema || '.' || table_name || '.' || column_name
            FROM information_schema.columns
            WHERE udt_name = 'geography' AND table_schema LIKE '%\\_service'
                -- a partition's indexes are its parent's (driver_location_pings by day, 0016)
                AND NOT (quote_ident(table_schema) || '.' || quote_ident(table_name))::regclass::oid
                    IN (SELECT inhrelid FROM pg_inherits)
            ORDER BY 1
            """
        ).fetchall()
        indexed = conn.execute(
            """
            SELECT n.nspname || '.' || t.relname || '.' || a.attname
            FROM pg_index i
            JOIN pg_class ix ON ix.oid = i.indexrelid
            JOIN pg_am am ON am.oid = ix.relam AND am.amname = 'gist'
            JOIN pg_class t ON t.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (i.indkey)
            """
        ).fetchall()
    assert len(geography_columns) == 7
    assert {row[0] for row in geography_columns} <= {row[0] for row in indexed}


def test_updated_at_is_maintained_and_defaults_fill_keys(fresh_database: str) -> None:
    migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:
        hold_keys(conn)  # the user's e-mail and name are sealed (0023)
        user_id, created, updated = conn.execute(
            """
            INSERT INTO user_service.users (email, full_name, dietary_preferences)
            VALUES ('ada@example.com', 'Ada', '{"vegetarian": true, "allergies": ["peanuts"]}')
            RETURNING id, created_at, updated_at
            """
        ).fetchone()
        conn.commit()
        assert created == updated
        row = conn.execute(
            "UPDATE user_service.users SET full_name = 'Ada L.' WHERE id = %s "
            "RETURNING updated_at, dietary_preferences -> 'allergies'",
            (user_id,),
        ).fetchone()
    assert row is not None and row[0] > updated
    assert row[1] == ["peanuts"]


def documented_rollbacks() -> dict[str, str]:
    """docs/migrations.md's rollback SQL, by migration file stem."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "migrations.md").read_text()
    return dict(re.findall(r"^### (\d{4}_\w+)\n.*?```sql\n(.*?)```", text, flags=re.M | re.S))


def test_documented_rollbacks_undo_every_migration(fresh_database: str) -> None:
    rollbacks = documented_rollbacks()
    assert sorted(rollbacks) == [name.removesuffix(".sql") for name in ALL_MIGRATIONS]
    migrate(fresh_database)

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for name in reversed(ALL_MIGRATIONS):
            conn.execute(rollbacks[name.removesuffix(".sql")].encode())
            assert status(fresh_database)[ALL_MIGRATIONS.index(name)] == f"pending  {name}"
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%\\_service'").fetchone()
    assert left == (0,)
    assert migrate(fresh_database) == ALL_MIGRATIONS
