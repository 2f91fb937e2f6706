"""`nibble relay [run] [--processes N] | status [--json] | lanes --outbox SCHEMA --set N`."""

from __future__ import annotations

import argparse
import json

from pipeline import json_logging
from pipeline.config import Settings
from pipeline.contract import catalog
from pipeline.errors import UsageError
from pipeline.outbox import admin, relay, supervisor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("relay", help="publish outbox events to Kafka (a long-running daemon)")
    parser.add_argument("action", nargs="?", choices=["run", "status", "lanes"], default="run")
    parser.add_argument(
        "--processes",
        type=int,
        default=supervisor.default_processes(),
        help="relay processes sharing the outboxes' lanes (default: one per core, here %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("--outbox", help="lanes: the outbox (service schema) whose lane count to change")
    parser.add_argument("--set", type=int, dest="lane_count", help="lanes: the new lane count (1-1024)")
    parser.add_argument(
        "--timeout", type=float, default=60, help="lanes: seconds to wait for the relays to leave the outbox"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "run":
        if args.processes < 1:
            raise UsageError("--processes must be at least 1")
        json_logging.configure()
        if args.processes > 1:
            return supervisor.supervise(args.processes, settings.relay.metrics_port)
        relay.Relay(settings).run()
        return 0
    if args.action == "lanes":
        return switch_lanes(args, settings)
    rows = admin.status(settings)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    streams: dict[str, list[str]] = {}
    for stream in catalog.load().values():
        streams.setdefault(stream.outbox, []).append(stream.aggregate_type)
    print(f"{'outbox':<20}{'streams':<22}{'backlog':>9}{'oldest (s)':>12}{'dead':>6}{'lanes':>7}  lanes by relay pid")
    for row in rows:
        held = row["lanes_by_relay_pid"]
        holders = "; ".join(f"{pid}: {','.join(map(str, lanes))}" for pid, lanes in held.items()) or "none"
        if row["switching"]:
            holders = "lane-count switch in progress"
        counts = f"{row['backlog_rows']:>9}{row['oldest_age_s']:>12}{row['dead_letter_rows']:>6}{row['lane_count']:>7}"
        print(f"{row['outbox']:<20}{','.join(streams.get(str(row['outbox']), ['-'])):<22}{counts}  {holders}")
    return 0


def switch_lanes(args: argparse.Namespace, settings: Settings) -> int:
    if args.outbox not in settings.relay.outbox_schemas or args.lane_count is None:
        raise UsageError(f"give --outbox (one of {', '.join(settings.relay.outbox_schemas)}) and --set N")
    if not 1 <= args.lane_count <= 1024:
        raise UsageError("--set: a lane count from 1 to 1024")
    previous = admin.switch_lane_count(settings, args.outbox, args.lane_count, args.timeout)
    print(f"{args.outbox}: {previous} -> {args.lane_count} lanes; relays rejoin within a second")
    return 0
