"""A test's own prefixed Pinot tables, read by queries written for the stack's."""

from __future__ import annotations

import re
from typing import Any


class PrefixedCursor:
    """A pinotdb cursor that reads a test's own tables where a query names the stack's (`FROM orders`)."""

    def __init__(self, cursor: Any, prefix: str, names: set[str]) -> None:
        self._cursor, self._prefix, self._names = cursor, prefix, names

    def execute(self, query: str, params: Any = None) -> Any:
        named = re.sub(r"\bFROM (\w+)", lambda m: f"FROM {self._table(m.group(1))}", query)
        return self._cursor.execute(named, params)

    def _table(self, name: str) -> str:
        return self._prefix + name if name in self._names else name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._cursor, attribute)
