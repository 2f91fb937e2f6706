"""Personal fields encrypted at rest (migration 0023, docs/security.md §8): ciphertext in every sealed column,
plaintext only with the key; a missing or wrong key is one line and writes nothing; `nibble keys rotate`
re-encrypts every row so that the old key is no longer needed; a login finds a user by e-mail through its
keyed hash."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pipeline.config import login_url
from pipeline.devstack.generator import Generator
from pipeline.errors import ConfigError
from pipeline.privacy import keys
from pipeline.privacy.sealing import SEALED, DataKeyError, SealedTable, rotate, use_keys

PHONE = "+49 30 1234567"
PLATE = "B-NB 2026"


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A key file of the test's own (a rotation must not touch the one the other tests share)."""
    path = tmp_path / "data.key"
    keys.save(path, keys.new_keyring())
    monkeypatch.setenv("NIBBLE_DATA_KEY_FILE", str(path))
    return path


@pytest.fixture
def workload(db: str, key_file: Path) -> Iterator[psycopg.Connection]:
    """A generated world and orders, plus the personal fields the generator leaves empty; yields a superuser
    connection holding the keys."""
    Generator(db, seed=5).run_batch(orders=30, start=datetime(2026, 11, 2, 12, tzinfo=UTC))
    with psycopg.connect(db, autocommit=True) as conn:
        use_keys(conn, keys.load(key_file))
        conn.execute(
            "UPDATE user_service.users SET phone = %s WHERE id IN (SELECT id FROM user_service.users LIMIT 50)",
            (PHONE,),
        )
        conn.execute(
            "INSERT INTO user_service.addresses (user_id, line1, line2, city, location) "
            "SELECT id, 'Torstrasse ' || row_number() OVER (), 'Hinterhaus', 'Berlin', 'SRID=4326;POINT(13.4 52.5)' "
            "FROM user_service.users LIMIT 40"
        )
        conn.execute("UPDATE driver_service.drivers SET phone = %s, license_plate = %s", (PHONE, PLATE))
        conn.execute("UPDATE restaurant_service.restaurants SET phone = %s", (PHONE,))
        conn.execute("UPDATE order_service.payments SET provider_reference = 'psp-' || order_id")
        yield conn


def plaintexts(conn: psycopg.Connection, table: SealedTable) -> dict[str, tuple]:
    """Every row's sealed values, decrypted with the session's keys."""
    columns = sql.SQL(", ").join(sql.SQL("public.unseal({})").format(sql.Identifier(c)) for c in table.columns)
    query = sql.SQL("SELECT id::text, {} FROM {}").format(columns, sql.Identifier(table.schema, table.table))
    return {row[0]: row[1:] for row in conn.execute(query)}


def stored(conn: psycopg.Connection, table: SealedTable) -> list[str]:
    """Every non-null value as it is at rest."""
    query = sql.SQL("SELECT v FROM {}, unnest(ARRAY[{}]) AS v WHERE v IS NOT NULL").format(
        sql.Identifier(table.schema, table.table), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    return [row[0] for row in conn.execute(query)]


def counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = [t.name for t in SEALED] + [
        f"{s}.outbox" for s in ("order_service", "driver_service", "restaurant_service")
    ]
    return {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in tables}  # our own names


def test_sealed_fields_are_ciphertext_at_rest_and_read_back_only_with_the_key(
    db: str, key_file: Path, workload: psycopg.Connection
) -> None:
    conn = workload
    for table in SEALED:
        values = stored(conn, table)
        assert values and all(v.startswith("enc:k1:") for v in values), table.name
        assert not any(PHONE in v or PLATE in v or "example.com" in v or "Driver" in v for v in values)
    users = plaintexts(conn, next(t for t in SEALED if t.table == "users"))
    assert all(email == f"user-{user_id}@example.com" for user_id, (email, _, _) in users.items())
    assert sum(phone == PHONE for _, phone, _ in users.values()) == 50
    drivers = plaintexts(conn, next(t for t in SEALED if t.table == "drivers"))
    assert all(
        name.startswith("Driver ") and (phone, plate) == (PHONE, PLATE) for name, phone, plate in drivers.values()
    )
    assert {v for (v,) in plaintexts(conn, SEALED[3]).values()} == {PHONE}

    with psycopg.connect(db) as keyless, pytest.raises(psycopg.Error) as refused:
        keyless.execute("SELECT public.unseal(full_name) FROM driver_service.drivers")
    assert refused.value.sqlstate == "NBK01"
    with psycopg.connect(db) as wrong, pytest.raises(DataKeyError) as wrong_key:
        use_keys(wrong, keys.new_keyring())
    assert str(wrong_key.value) == (
        "data key k1 is not the one this database registered (a wrong key file?): nothing written"
    )
    # The read-only checks' login sees the drivers' names as ciphertext only.
    with psycopg.connect(login_url(db, "nibble_verify")) as verify:
        names = verify.execute("SELECT full_name FROM driver_service.drivers").fetchall()
    assert names and all(name.startswith("enc:k1:") for (name,) in names)


def test_a_missing_or_wrong_key_fails_in_one_line_and_writes_nothing(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2026, 11, 2, 12, tzinfo=UTC)
    monkeypatch.setenv("NIBBLE_DATA_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match=r"^NIBBLE_DATA_KEY_FILE: cannot read .*missing.key: No such file"):
        Generator(db, seed=5).run_batch(orders=5, start=start)

    with psycopg.connect(db, autocommit=True) as conn:
        use_keys(conn, keys.new_keyring())  # the database's first use registers this key
        before = counts(conn)
    wrong = tmp_path / "wrong.key"
    keys.save(wrong, keys.new_keyring())
    monkeypatch.setenv("NIBBLE_DATA_KEY_FILE", str(wrong))
    with pytest.raises(DataKeyError) as error:
        Generator(db, seed=5).run_batch(orders=5, start=start)
    assert (
        str(error.value) == "data key k1 is not the one this database registered (a wrong key file?): nothing written"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "generate", "--rate", "50", "--duration", "2"],
        env={**os.environ, "NIBBLE_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"nibble generate: {error.value}"]

    with psycopg.connect(db, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as keyless:
            conn.execute(
                "INSERT INTO driver_service.drivers (user_id, full_name, city, vehicle_type) "
                "VALUES (gen_random_uuid(), 'Dana', 'Berlin', 'car')"
            )
        assert keyless.value.sqlstate == "NBK01" and "\n" not in keyless.value.diag.message_primary
        assert counts(conn) == before and all(n == 0 for n in before.values())


def test_rotation_re_encrypts_every_row_and_the_old_key_is_no_longer_needed(
    db: str, key_file: Path, workload: psycopg.Connection
) -> None:
    conn = workload
    # An order with an older failed payment: its re-encryption must not make the order's status 'failed'.
    order = conn.execute("SELECT order_id FROM order_service.payments WHERE status = 'captured' LIMIT 1").fetchone()[0]
    conn.execute(
        "INSERT INTO order_service.payments (order_id, amount, method, status, provider_reference, created_at, "
        "updated_at) VALUES (%s, 1, 'card', 'failed', 'psp-failed', now() - interval '1 hour', "
        "now() - interval '1 hour')",
        (order,),
    )
    conn.execute(
        "UPDATE order_service.payments SET provider_reference = 'psp-ok' WHERE order_id = %s AND status = 'captured'",
        (order,),
    )
    before = {table.name: plaintexts(conn, table) for table in SEALED}
    updated = {t.name: conn.execute(f"SELECT id, updated_at FROM {t.name} ORDER BY id").fetchall() for t in SEALED}
    statuses = conn.execute("SELECT id, status, payment_status FROM order_service.orders ORDER BY id").fetchall()
    written = counts(conn)
    email = conn.execute("SELECT public.unseal(email) FROM user_service.users LIMIT 1").fetchone()[0]

    progress: list[str] = []
    ring = rotate(db, key_file, 7, progress.append)

    assert ring.current == "k2" and keys.load(key_file) == ring
    assert progress[0] == f"k2 added to {key_file}"
    assert f"driver_service.drivers: {len(before['driver_service.drivers'])} of" in "\n".join(progress)
    assert progress[-1].startswith("k1 no longer needed by this database")
    with psycopg.connect(db, autocommit=True) as fresh:
        use_keys(fresh, ring.only({"k2"}))  # the new key alone
        for table in SEALED:
            assert all(v.startswith("enc:k2:") for v in stored(fresh, table)), table.name
            assert plaintexts(fresh, table) == before[table.name], table.name
            assert (
                fresh.execute(f"SELECT id, updated_at FROM {table.name} ORDER BY id").fetchall() == updated[table.name]
            )
        assert (
            fresh.execute("SELECT id, status, payment_status FROM order_service.orders ORDER BY id").fetchall()
            == statuses
        )
        assert counts(fresh) == written  # no event: a re-encryption is no change of the row
        assert fresh.execute(
            "SELECT count(*) FROM user_service.users WHERE email_lookup = public.lookup_hash(%s)", (email,)
        ).fetchone() == (1,)
        assert fresh.execute("SELECT key_id FROM public.data_keys WHERE retired_at IS NOT NULL").fetchall() == [("k1",)]
    with (
        psycopg.connect(db) as stale,
        pytest.raises(DataKeyError, match="data key k1 is not this database's current key k2"),
    ):
        use_keys(stale, ring.only({"k1"}))


def test_the_cli_rotates_and_a_wrong_key_file_stops_it_in_one_line(db: str, key_file: Path) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        use_keys(conn, keys.load(key_file))
        conn.execute(
            "INSERT INTO driver_service.drivers (user_id, full_name, city, vehicle_type) "
            "VALUES (gen_random_uuid(), 'Dana', 'Berlin', 'car')"
        )
    env = {**os.environ, "NIBBLE_DATABASE_URL": db, "NIBBLE_DATA_KEY_FILE": str(key_file)}
    command = [sys.executable, "-m", "pipeline", "keys", "rotate", "--batch", "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "[keys] driver_service.drivers: 1 of 1 rows sealed under k2" in done.stdout.splitlines()
    assert keys.load(key_file).current == "k2"

    keys.save(key_file, keys.new_keyring())
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "nibble keys: data key lookup is not the one this database registered (a wrong key file?): nothing written"
    ]


def test_a_login_finds_a_user_by_e_mail_through_its_keyed_hash(db: str, key_file: Path) -> None:
    with psycopg.connect(login_url(db, "user_service"), autocommit=True) as conn:
        use_keys(conn, keys.load(key_file))
        (ada,) = conn.execute(
            "INSERT INTO users (email, full_name) VALUES ('Ada@Example.com', 'Ada Lovelace') RETURNING id"
        ).fetchone()
        conn.execute("INSERT INTO users (email, full_name) VALUES ('grace@example.com', 'Grace Hopper')")
        find = "SELECT id FROM users WHERE email_lookup = public.lookup_hash(%s) AND deleted_at IS NULL"
        assert conn.execute(find, ("ada@example.COM",)).fetchall() == [(ada,)]
        assert conn.execute(find, ("nobody@example.com",)).fetchall() == []
        # keyed: not the plain hash anyone could compute from a guessed address
        lookup = conn.execute("SELECT email_lookup FROM users WHERE id = %s", (ada,)).fetchone()[0]
        assert lookup != hashlib.sha256(b"ada@example.com").hexdigest()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO users (email, full_name) VALUES ('ADA@example.com', 'Someone else')")
        conn.execute("UPDATE users SET deleted_at = now() WHERE id = %s", (ada,))
        conn.execute("INSERT INTO users (email, full_name) VALUES ('ada@example.com', 'Ada, again')")
        assert len(conn.execute(find, ("ada@example.com",)).fetchall()) == 1
