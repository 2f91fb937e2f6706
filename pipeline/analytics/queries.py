"""The analysts' query library over Pinot: one documented .sql file per question in queries/ beside this module.

Values only ever travel as bound parameters (pinotdb's `%(name)s`, which quotes and escapes them). A line
ending in `-- if NAME` is an optional filter: kept when NAME is given, dropped when it is not; the SQL text
itself never comes from user input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

QUERIES_DIR = Path(__file__).resolve().parent / "queries"
OPTIONAL_LINE = re.compile(r"\s*-- if (\w+)\s*$")
PARAMETER = re.compile(r"%\((\w+)\)s")
NUMBERS = ("lat", "lon", "radius_m")  # the library's numeric parameters besides the window and the limit
GRAINS = {"minute": "MINUTE", "hour": "HOUR", "day": "DAY"}


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str

    @classmethod
    def load(cls, path: Path) -> Query:
        text = path.read_text()
        header = [line[3:] for line in text.splitlines() if line.startswith("-- ")]
        body = "\n".join(line for line in text.splitlines() if not line.startswith("-- "))
        return cls(path.stem, " ".join(header), body)

    @property
    def parameters(self) -> set[str]:
        return set(PARAMETER.findall(self.sql))

    def render(self, params: dict[str, Any]) -> str:
        """The SQL with optional filters whose parameter is missing dropped (values stay parameters)."""
        lines = []
        for line in self.sql.splitlines():
            optional = OPTIONAL_LINE.search(line)
            if optional is None:
                lines.append(line)
            elif params.get(optional.group(1)) is not None:
                lines.append(line[: optional.start()])
        return "\n".join(lines)


def library() -> dict[str, Query]:
    return {path.stem: Query.load(path) for path in sorted(QUERIES_DIR.glob("*.sql"))}


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]


def run_query(cursor: Any, name: str, **params: Any) -> Result:
    """Run library query `name`; `since`/`until` are datetimes (default: the last 24 hours)."""
    query = library()[name]
    until = params.pop("until", None) or datetime.now(UTC)
    since = params.pop("since", None) or until - timedelta(days=1)
    values = {"since": _millis(since), "until": _millis(until), "limit": 100, **params}
    _check_values(values)
    if "grain" in values:
        values["grain"] = GRAINS[values["grain"]]
    missing = {p for p in query.parameters if values.get(p) is None} - _optional(query)
    if missing:
        raise UsageError(f"query {name} needs {', '.join(sorted(missing))}")
    sql = query.render(values)
    cursor.execute(sql, {k: v for k, v in values.items() if k in PARAMETER.findall(sql)})
    return Result([d[0] for d in cursor.description], [list(row) for row in cursor.fetchall()])


def _optional(query: Query) -> set[str]:
    return {m.group(1) for line in query.sql.splitlines() if (m := OPTIONAL_LINE.search(line))}


def _check_values(values: dict[str, Any]) -> None:
    """pinotdb quotes text parameters but pastes anything else as its str(), and sends a lone `*` unquoted:
    so numbers must be finite ints or floats, the limit a positive int, any other value text (never `*`)."""
    for name, value in values.items():
        if value is None or name in ("since", "until"):
            continue
        if name == "limit":
            if type(value) is not int or value < 1:
                raise UsageError(f"limit must be a positive whole number, not {value!r:.40}")
        elif name in NUMBERS:
            if type(value) not in (int, float) or not math.isfinite(value):
                raise UsageError(f"{name} must be a finite number, not {value!r:.40}")
        elif type(value) is not str or value == "*":
            raise UsageError(f"{name} must be text other than a lone '*', not {value!r:.40}")


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
