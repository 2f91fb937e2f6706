"""The data keys of migration 0023 for tests that write personal fields themselves (a driver's name, ...)."""

from __future__ import annotations

from typing import Any

import psycopg

from pipeline.privacy import keys
from pipeline.privacy.sealing import use_keys


def hold_keys(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """`conn` with the local stack's data keys in its session (NIBBLE_DATA_KEY_FILE, else generated on first
    use): 0023's triggers refuse a personal field written without them."""
    use_keys(conn, keys.load())
    return conn
