"""`nibble verify` reads PostgreSQL as the read-only `nibble_verify` login (migration 0021), not the superuser
of NIBBLE_DATABASE_URL."""

from __future__ import annotations

import psycopg
import pytest

from pipeline.analytics.verify import Verifier
from pipeline.config import load_settings


def test_verify_connects_as_the_read_only_login(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIBBLE_DATABASE_URL", db)
    with Verifier(load_settings()).database() as conn:
        assert conn.execute("SELECT current_user, current_setting('transaction_read_only')").fetchone() == (
            "nibble_verify",
            "on",
        )
        conn.execute("SELECT count(*) FROM order_service.orders, driver_service.outbox")  # what it compares
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM order_service.outbox")
