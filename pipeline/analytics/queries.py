"""The analysts' query library over Pinot: one documented .sql file per question in queries/ beside this module.

Values only ever travel as bound parameters (pinotdb's `%(name)s`, which quotes and escapes them). A line
ending in `-- if NAME` is an optional filter: kept when NAME is given, dropped when it is not; the SQL text
itself never comes from user input. Each file's `-- columns:` line gives every result column a kind, and
answers come back as Python values of that kind (see KINDS). A `-- window: whole hours` line makes the
window whole hours (see whole_hours), and the word GRAIN_COLUMN in the SQL stands for the column of the
grain asked for (GRAINS: a fixed mapping, never user text).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pinotdb.exceptions

from connectors.pinot import broker_connection
from pipeline.analytics.moments import parse_moment
from pipeline.config import Settings, load_settings
from pipeline.errors import QueryFailed, UsageError

if TYPE_CHECKING:
    import pandas

QUERIES_DIR = Path(__file__).resolve().parent / "queries"
OPTIONAL_LINE = re.compile(r"\s*-- if (\w+)\s*$")
COLUMNS_LINE = "-- columns:"
WHOLE_HOURS_LINE = "-- window: whole hours"
PARAMETER = re.compile(r"%\((\w+)\)s")
NUMBERS = ("lat", "lon", "radius_m")  # the library's numeric parameters besides the window and the limit
FROM_TABLE = re.compile(r"\bFROM (\w+)")
# The order ledger's period columns, computed at ingestion (pinot/tables/order_ledger.json).
GRAINS = {"minute": "placed_minute", "hour": "placed_hour", "day": "placed_day"}
GRAIN_COLUMN = re.compile(r"\bGRAIN_COLUMN\b")
# What each kind of column holds in a Result: the unit is part of the column's name where there is one.
KINDS = {
    "text": "str",
    "time": "datetime (UTC)",
    "money": "int cents (float for a mean)",
    "count": "int",
    "ratio": "float, 0..1",
    "number": "float",
    "coordinate": "float, degrees",
}
# Pinot's stand-ins for "no value": the default null of a LONG time column and of a STRING column.
NULL_MILLIS = -(2**63)
NULL_TEXT = "null"
# Pinot's error codes for a query that ran out of time: still waiting for the server's scheduler, server
# execution timeout, broker timeout, and servers that did not respond within it.
TIMEOUT_CODES = {240, 250, 400, 427}
# Unknown column or table: the checked-in tables and the ones Pinot serves differ.
SCHEMA_CODES = {190, 710}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str
    columns: tuple[Column, ...]
    whole_hours: bool = False  # a star-tree cannot serve a millisecond bound: the window is widened to hours

    @classmethod
    def load(cls, path: Path) -> Query:
        lines = path.read_text().splitlines()
        declared = next(line for line in lines if line.startswith(COLUMNS_LINE))
        columns = tuple(Column(*item.split()) for item in declared.removeprefix(COLUMNS_LINE).split(","))
        unknown = {c.kind for c in columns} - set(CONVERTERS)
        if unknown:
            raise ValueError(f"{path.name}: unknown column kind {', '.join(sorted(unknown))}")
        header = [line[3:] for line in lines if line.startswith("-- ") and line not in (declared, WHOLE_HOURS_LINE)]
        body = "\n".join(line for line in lines if not line.startswith("-- "))
        return cls(path.stem, " ".join(header), body, columns, WHOLE_HOURS_LINE in lines)

    @property
    def parameters(self) -> set[str]:
        grain = {"grain"} if GRAIN_COLUMN.search(self.sql) else set()
        return set(PARAMETER.findall(self.sql)) | grain

    @property
    def optional(self) -> set[str]:
        return {m.group(1) for line in self.sql.splitlines() if (m := OPTIONAL_LINE.search(line))}

    def render(self, params: dict[str, Any]) -> str:
        """The SQL with optional filters whose parameter is missing dropped and GRAIN_COLUMN named after the
        `grain` given (values stay parameters)."""
        lines = []
        for line in self.sql.splitlines():
            optional = OPTIONAL_LINE.search(line)
            if optional is None:
                lines.append(line)
            elif params.get(optional.group(1)) is not None:
                lines.append(line[: optional.start()])
        return GRAIN_COLUMN.sub(lambda _: GRAINS[params["grain"]], "\n".join(lines))


@functools.cache  # checked-in files: read once per process
def library() -> dict[str, Query]:
    return {path.stem: Query.load(path) for path in sorted(QUERIES_DIR.glob("*.sql"))}


@dataclass(frozen=True)
class Result:
    """One answer: typed columns, rows of Python values, the window it covers and the broker's own time."""

    name: str
    columns: tuple[Column, ...]
    rows: list[list[Any]]
    since: datetime | None  # None for a query about "right now"
    until: datetime | None
    broker_ms: int

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a DataFrame (needs the `pandas` extra: pip install 'nibble-pipeline[pandas]')."""
        try:
            import pandas
        except ImportError:
            raise UsageError("to_pandas needs pandas: pip install 'nibble-pipeline[pandas]'") from None
        frame = pandas.DataFrame.from_records(self.rows, columns=[c.name for c in self.columns])
        for column in self.columns:
            if column.kind == "time":
                frame[column.name] = pandas.to_datetime(frame[column.name], utc=True)
            elif column.kind == "count":
                frame[column.name] = frame[column.name].astype("Int64")
        return frame


def run(name: str, settings: Settings | None = None, **params: Any) -> Result:
    """Run library query `name` against the broker of `settings` (default: the NIBBLE_* environment).

    `since`/`until` take datetimes or the CLI's forms (`-2h`, `-7d`, `today`, ISO); default the last 24 h.
    """
    settings = settings or load_settings()
    connection = broker_connection(settings.endpoints.pinot_broker_url, settings.endpoints.pinot_query_timeout_ms)
    return run_query(connection.cursor(), name, settings=settings, **params)


def run_query(
    cursor: Any, name: str, settings: Settings | None = None, tables: dict[str, str] | None = None, **params: Any
) -> Result:
    """Run library query `name` on a pinotdb cursor; `settings` only words the errors; `tables` reads other
    tables than the checked-in names (e.g. {"orders": "bench_orders"}: the benchmark's copies)."""
    queries = library()
    if name not in queries:
        raise UsageError(f"no query {name!r} in the library; there are {', '.join(queries)}")
    query = queries[name]
    now = datetime.now(UTC)
    until = _moment(params.pop("until", None), now) or now
    since = _moment(params.pop("since", None), now) or until - timedelta(days=1)
    if since >= until:
        raise UsageError(f"the window is empty: since {since.isoformat()} is not before until {until.isoformat()}")
    if query.whole_hours:
        since, until = whole_hours(since, until)
    values = {"since": _millis(since), "until": _millis(until), "limit": 100, **params}
    _check_values(values)
    if "grain" in values and values["grain"] not in GRAINS:
        raise UsageError(f"grain {values['grain']!r}: use one of {', '.join(GRAINS)}")
    missing = {p for p in query.parameters if values.get(p) is None} - query.optional
    if missing:
        raise UsageError(f"query {name} needs {', '.join(sorted(missing))}")
    sql = query.render(values)
    if tables:
        sql = FROM_TABLE.sub(lambda m: f"FROM {tables.get(m.group(1), m.group(1))}", sql)
    try:
        cursor.execute(sql, {k: v for k, v in values.items() if k in PARAMETER.findall(sql)})
        raw = cursor.fetchall()
    except (pinotdb.exceptions.Error, httpx.HTTPError) as exc:
        response = (getattr(cursor, "raw_query_response", None) or {}).get("response")
        errors = response.get("exceptions", []) if isinstance(response, dict) else []
        endpoints = (settings or load_settings()).endpoints
        broker, timeout_ms = endpoints.pinot_broker_url, endpoints.pinot_query_timeout_ms
        raise failure(exc, errors, name, broker, timeout_ms) from None
    returned = [d[0] for d in cursor.description]
    if returned != [c.name for c in query.columns]:
        raise QueryFailed(f"query {name} answered columns {returned}, but {name}.sql declares {query.columns}")
    rows = _typed(raw, query.columns)
    window = (since, until) if "since" in query.parameters else (None, None)
    return Result(name, query.columns, rows, *window, int(getattr(cursor, "timeUsedMs", -1)))


def whole_hours(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The window widened to whole UTC hours: `since` down to its hour, `until` up to the next whole hour (both
    unchanged when already whole), so that a filter on the ingested hour column selects exactly it."""
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = until.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start, end if end == until else end + timedelta(hours=1)


def failure(exc: Exception, errors: list[dict[str, Any]], name: str, broker: str, timeout_ms: int) -> QueryFailed:
    """One line naming the broker and the setting that fixes it; `errors` are Pinot's own `exceptions`."""
    codes = {int(e.get("errorCode", -1)) for e in errors}
    # A server out of time mid-query reports a plain execution error that says so.
    timed_out = codes & TIMEOUT_CODES or any("timed out" in str(e.get("message", "")).lower() for e in errors)
    if isinstance(exc, httpx.TimeoutException) or timed_out:
        return QueryFailed(
            f"the Pinot broker at {broker} did not answer query {name} within "
            f"NIBBLE_PINOT_QUERY_TIMEOUT_MS={timeout_ms} ms; raise it or narrow the window"
        )
    if isinstance(exc, httpx.TransportError):
        return QueryFailed(
            f"the Pinot broker at {broker} is unreachable ({type(exc).__name__}: {exc}); "
            "check that it runs and that NIBBLE_PINOT_BROKER_URL points at it"
        )
    detail = _first_reason(errors[0]["message"]) if errors else " ".join(str(exc).split())[:300]
    if codes & SCHEMA_CODES:
        return QueryFailed(
            f"the Pinot broker at {broker} refused query {name}: {detail}; the tables it serves differ from "
            "pinot/ (run `nibble pinot apply`, or point NIBBLE_PINOT_BROKER_URL at this pipeline's Pinot)"
        )
    return QueryFailed(f"the Pinot broker at {broker} failed query {name}: {detail} (NIBBLE_PINOT_BROKER_URL)")


def _first_reason(message: str) -> str:
    """`UnknownColumnError:\\norg...BadQueryRequestException: Unknown columnName 'x' ...` -> the sentence."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    reason = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0] if lines else message
    return reason.split("Exception: ", 1)[-1][:300]


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


def _text(value: Any) -> str | None:
    return None if value is None or value == NULL_TEXT else str(value)


def _finite(value: Any) -> float | None:
    """A number, or None for no value (Pinot answers NaN or -Infinity for an aggregate over no rows)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    number = _finite(value)
    return None if number is None else int(number)


def _money(value: Any) -> int | float | None:
    number = _finite(value)
    return int(number) if number is not None and number.is_integer() else number


@functools.lru_cache(maxsize=65536)  # time buckets repeat on every row of their period
def _time(value: Any) -> datetime | None:
    number = _finite(value)
    return None if number is None or int(number) == NULL_MILLIS else datetime.fromtimestamp(int(number) / 1000, UTC)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "time": _time,
    "money": _money,
    "count": _count,
    "ratio": _finite,
    "number": _finite,
    "coordinate": _finite,
}


def _typed(raw: list[list[Any]], columns: tuple[Column, ...]) -> list[list[Any]]:
    """Column by column (one converter per column, not a kind test per cell): 20,000 rows stay cheap."""
    if not raw:
        return []
    by_column = zip(*raw, strict=True)
    converted = [list(map(CONVERTERS[c.kind], values)) for c, values in zip(columns, by_column, strict=True)]
    return [list(row) for row in zip(*converted, strict=True)]


def _moment(value: datetime | str | None, now: datetime) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
    return parse_moment(value, now, UTC)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
