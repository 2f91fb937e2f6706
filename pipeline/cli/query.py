"""`nibble query NAME [--since T] [--until T] [--city C] ... [--format table|csv|json]`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime

from connectors.pinot import broker_connection
from pipeline.analytics.queries import GRAINS, Result, library, run_query
from pipeline.config import Settings


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
    params = {"since": _as_utc(args.since), "until": _as_utc(args.until), "city": args.city, "limit": args.limit}
    query = library()[args.name]
    if "grain" in query.parameters:
        params["grain"] = args.grain
    if "lat" in query.parameters:
        params |= {"lat": args.lat, "lon": args.lon, "radius_m": args.radius_m}
    cursor = broker_connection(settings.endpoints.pinot_broker_url).cursor()
    print_result(run_query(cursor, args.name, **params), args.format)
    return 0


def print_result(result: Result, output_format: str) -> None:
    if output_format == "json":
        print(json.dumps([dict(zip(result.columns, row, strict=True)) for row in result.rows], indent=2))
    elif output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        widths = [max(len(str(v)) for v in [c, *(row[i] for row in result.rows)]) for i, c in enumerate(result.columns)]
        print("  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)))
        for row in result.rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
        print(f"({len(result.rows)} rows)")


def _as_utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
