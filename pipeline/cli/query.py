"""`nibble query NAME [--since T] [--until T] [--tz ZONE] [--city C] ... [--format table|csv|json]`.

Table output is for reading: times in ISO 8601 in `--tz`, money in currency units with two decimals,
counts with thousands separators, ratios as percentages. csv and json are for machines: exact integer
cents (the column name says `_cents`), ratios as fractions, times in ISO 8601, nulls empty / null.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from datetime import UTC, datetime, tzinfo
from typing import Any

from pipeline.analytics.moments import FORMS, parse_moment, time_zone
from pipeline.analytics.queries import GRAINS, Column, Result, library, run
from pipeline.config import Settings

NULL_SHOWN = "-"


def register(subparsers: argparse._SubParsersAction) -> None:
    queries = library()
    parser = subparsers.add_parser(
        "query",
        help="run a query of the analysts' library against Pinot",
        epilog="queries:\n" + "\n".join(f"  {q.name:<26}{q.description}" for q in queries.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # argparse reads an argument starting with "-" as a value only if it looks like a negative number:
    # teach this parser that offsets such as `--since -2h` are values too.
    parser._negative_number_matcher = re.compile(r"^-\d+([smhdw]|\.\d+)?$")
    parser.add_argument("name", choices=sorted(queries), metavar="NAME", help="the query (listed below)")
    parser.add_argument("--since", help=f"start of the window: {FORMS} (default: 24 h before --until)")
    parser.add_argument("--until", help="end of the window, same forms (default: now)")
    parser.add_argument("--tz", default="UTC", help="time zone of times shown and of times typed (default UTC)")
    parser.add_argument("--city")
    parser.add_argument("--grain", choices=sorted(GRAINS), default="hour", help="time bucket of GMV queries")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--lat", type=float, help="centre of deliveries_within_radius")
    parser.add_argument("--lon", type=float)
    parser.add_argument("--radius-m", type=float, default=2000)
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    zone = time_zone(args.tz)
    now = datetime.now(UTC)
    params: dict[str, Any] = {"city": args.city, "limit": args.limit}
    for bound in ("since", "until"):
        if getattr(args, bound) is not None:
            params[bound] = parse_moment(getattr(args, bound), now, zone)
    query = library()[args.name]
    if "grain" in query.parameters:
        params["grain"] = args.grain
    if "lat" in query.parameters:
        params |= {"lat": args.lat, "lon": args.lon, "radius_m": args.radius_m}
    result = run(args.name, settings, **params)
    print(render(result, args.format, zone), end="")
    return 0


def render(result: Result, output_format: str, zone: tzinfo) -> str:
    if output_format == "json":
        records = [
            {c.name: _machine(v, c, zone) for c, v in zip(result.columns, row, strict=True)} for row in result.rows
        ]
        return json.dumps(records, indent=2) + "\n"
    if output_format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(c.name for c in result.columns)
        for row in result.rows:
            writer.writerow("" if v is None else _machine(v, c, zone) for c, v in zip(result.columns, row, strict=True))
        return out.getvalue()
    return _table(result, zone)


def _table(result: Result, zone: tzinfo) -> str:
    headers = [_heading(c) for c in result.columns]
    cells = [[_readable(v, c, zone) for c, v in zip(result.columns, row, strict=True)] for row in result.rows]
    widths = [max(len(text) for text in [h, *(row[i] for row in cells)]) for i, h in enumerate(headers)]
    right = [c.kind not in ("text", "time") for c in result.columns]

    def line(texts: list[str]) -> str:
        return "  ".join(t.rjust(w) if r else t.ljust(w) for t, w, r in zip(texts, widths, right, strict=True)).rstrip()

    notes = [f"{len(result.rows)} rows"]
    if result.since is not None and result.until is not None:
        notes.append(f"{_iso(result.since, zone, 'seconds')} .. {_iso(result.until, zone, 'seconds')}")
    if any(c.kind == "money" for c in result.columns):
        notes.append("money in currency units")
    notes.append(f"Pinot {result.broker_ms} ms")
    lines = [line(headers), *(line(row) for row in cells), f"({'; '.join(notes)})"]
    return "\n".join(lines) + "\n"


def _heading(column: Column) -> str:
    return column.name.removesuffix("_cents") if column.kind == "money" else column.name


def _readable(value: Any, column: Column, zone: tzinfo) -> str:
    if value is None:
        return NULL_SHOWN
    if column.kind == "time":
        return _iso(value, zone)
    if column.kind == "money":
        return f"{value / 100:,.2f}"
    if column.kind == "count":
        return f"{value:,}"
    if column.kind == "ratio":
        return f"{value * 100:.1f}%"
    if column.kind == "number":
        return f"{value:,.2f}"
    if column.kind == "coordinate":
        return f"{value:.6f}"
    return str(value)


def _machine(value: Any, column: Column, zone: tzinfo) -> Any:
    if value is not None and column.kind == "time":
        return _iso(value, zone)
    return value


def _iso(moment: datetime, zone: tzinfo, timespec: str = "auto") -> str:
    return moment.astimezone(zone).isoformat(timespec=timespec)
