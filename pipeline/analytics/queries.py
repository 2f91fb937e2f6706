"""The analysts' query library over Pinot: one documented .sql file per question in pipeline/queries/.

Values only ever travel as bound parameters (pinotdb's `%(name)s`, which quotes and escapes them). A line
ending in `-- if NAME` is an optional filter: kept when NAME is given, dropped when it is not; the SQL text
itself never comes from user input.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.pinot import broker_connection
from pipeline.config import Settings

QUERIES_DIR = Path(__file__).resolve().parent / "queries"
OPTIONAL_LINE = re.compile(r"\s*-- if (\w+)\s*$")
PARAMETER = re.compile(r"%\((\w+)\)s")
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
    if "grain" in values:
        values["grain"] = GRAINS[values["grain"]]
    missing = {p for p in query.parameters if values.get(p) is None} - _optional(query)
    if missing:
        raise ValueError(f"query {name} needs {', '.join(sorted(missing))}")
    sql = query.render(values)
    cursor.execute(sql, {k: v for k, v in values.items() if k in PARAMETER.findall(sql)})
    return Result([d[0] for d in cursor.description], [list(row) for row in cursor.fetchall()])


def _optional(query: Query) -> set[str]:
    return {m.group(1) for line in query.sql.splitlines() if (m := OPTIONAL_LINE.search(line))}


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def register(subparsers: argparse._SubParsersAction) -> None:
    queries = library()
    parser = subparsers.add_parser(
        "query",
        help="run a query of the analysts' library against Pinot",
        epilog="queries:\n" + "\n".join(f"  {q.name:<26}{q.description}" for q in queries.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=sorted(queries), metavar="NAME", help="the query (listed below)")
    parser.add_argument("--since", type=datetime.fromisoformat, help="ISO time (default: 24 h before --until)")
    parser.add_argument("--until", type=datetime.fromisoformat, help="ISO time (default: now)")
    parser.add_argument("--city")
    parser.add_argument("--grain", choices=sorted(GRAINS), default="hour", help="time bucket of GMV queries")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--lat", type=float, help="centre of deliveries_within_radius")
    parser.add_argument("--lon", type=float)
    parser.add_argument("--radius-m", type=float, default=2000)
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    params = {"since": _aware(args.since), "until": _aware(args.until), "city": args.city, "limit": args.limit}
    query = library()[args.name]
    if "grain" in query.parameters:
        params["grain"] = args.grain
    if "lat" in query.parameters:
        params |= {"lat": args.lat, "lon": args.lon, "radius_m": args.radius_m}
    try:
        result = run_query(broker_connection(settings.pinot_broker).cursor(), args.name, **params)
    except ValueError as exc:
        print(f"nibble query: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps([dict(zip(result.columns, row, strict=True)) for row in result.rows], indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        widths = [max(len(str(v)) for v in [c, *(row[i] for row in result.rows)]) for i, c in enumerate(result.columns)]
        print("  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)))
        for row in result.rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
        print(f"({len(result.rows)} rows)")
    return 0


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
