"""`nibble verify [--since T] [--until T] [--stream S]... [--city C]... [--format table|json] [--repair]
[--watch INTERVAL]`: does Pinot equal PostgreSQL? Exit 0 only when everything compared is equal."""

from __future__ import annotations

import argparse
import json
import logging
import re
from datetime import UTC, datetime

from pipeline import json_logging
from pipeline.analytics import drift
from pipeline.analytics.moments import FORMS, parse_moment
from pipeline.analytics.verify import BEGINNING, END_OF_TIME, STREAMS, Report, Scope, Verifier
from pipeline.analytics.watch import watch
from pipeline.config import Settings
from pipeline.errors import NibbleError, UsageError

LOG = logging.getLogger("nibble.verify")

# What an operator does about the drift a repair cannot take back.
ADVICE = {
    "extra": "Pinot holds rows PostgreSQL never wrote (a message from another producer or database on the topic); "
    "no event can delete an upsert row: stop that producer, then `nibble pinot rebuild TABLE` "
    "(docs/operations.md, 'Verifying Pinot against PostgreSQL')",
    "duplicated": "Pinot counts an event twice (re-sent under a new event id, or after its de-duplication window); "
    "`nibble pinot rebuild TABLE` refills the table from Kafka",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="compare Pinot with PostgreSQL, name the drifting aggregates (--repair re-publishes them)",
        description="Compare every stream's bucketed counts and sums in PostgreSQL and Pinot, bisect the "
        "differing buckets down to aggregate ids and classify them: missing, extra, stale, duplicated. "
        "Changes in flight (in an outbox, in Kafka, not yet ingested) are checked again, never reported. "
        "Exit status 0 only when everything compared is equal.",
    )
    parser._negative_number_matcher = re.compile(r"^-\d+([smhdw]|\.\d+)?$")  # `--since -2h` is a value
    parser.add_argument("--since", help=f"start of the window: {FORMS} (default: the beginning)")
    parser.add_argument("--until", help="end of the window, same forms (default: now)")
    parser.add_argument(
        "--stream", action="append", choices=list(STREAMS), help="only this stream (repeatable; default: all)"
    )
    parser.add_argument("--city", action="append", help="only this city's aggregates (repeatable)")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--repair", action="store_true", help="re-publish missing and stale aggregates, verify again")
    parser.add_argument(
        "--settle-timeout", type=float, default=60, help="seconds to wait for Pinot to ingest what Kafka holds (60)"
    )
    parser.add_argument(
        "--publish-timeout", type=float, default=300, help="--repair: seconds to wait for the relay to publish (300)"
    )
    parser.add_argument(
        "--watch",
        type=float,
        metavar="INTERVAL",
        help="verify the recent window (--since, default -2h, up to now) every INTERVAL seconds and serve "
        "Prometheus gauges on NIBBLE_VERIFY_METRICS_PORT (9474)",
    )
    parser.add_argument("--rounds", type=int, help="--watch: stop after this many verifications (default: never)")
    parser.set_defaults(handler=run)


def scope_from(args: argparse.Namespace, now: datetime) -> Scope:
    return Scope(
        since=parse_moment(args.since, now, UTC) if args.since else BEGINNING,
        until=parse_moment(args.until, now, UTC) if args.until else now,
        cities=tuple(args.city or ()),
        streams=tuple(args.stream or STREAMS),
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    verifier = Verifier(settings, settle_timeout_s=args.settle_timeout)
    if args.watch is not None:
        if args.watch <= 0 or args.repair:
            raise UsageError("--watch takes an interval above 0 seconds, and no --repair")
        args.since = args.since or "-2h"
        json_logging.configure()
        watch(settings, verifier, args.watch, lambda now: scope_from(args, now), _log_round, args.rounds)
        return 0
    scope = scope_from(args, datetime.now(UTC))
    report = verifier.verify(scope)
    show(report, args.format)
    if args.repair and report.drifts:
        repairable = [d for d in report.drifts if d.kind in ("missing", "stale") and STREAMS[d.stream].snapshot]
        written = verifier.repair(repairable)
        events = ", ".join(f"{table}: {count:,}" for table, count in written.items()) or "none"
        print(f"repair: snapshot events written ({events}); waiting for the relay to publish them", flush=True)
        if not verifier.wait_published(repairable, args.publish_timeout):
            raise NibbleError(
                f"the snapshots were not published within {args.publish_timeout:.0f} s: is `nibble relay` running?"
            )
        report = verifier.verify(scope)
        show(report, args.format)
    return 0 if report.equal else 1


def _log_round(report: Report) -> None:
    found = drift.summary(report.drifts)
    LOG.info(
        "verified %s to %s in %.1f s: %s",
        report.scope.since.isoformat(),
        report.scope.until.isoformat(),
        report.seconds,
        ", ".join(f"{stream} {kind} {n}" for (stream, kind), n in sorted(found.items())) or "equal",
    )


def show(report: Report, form: str) -> None:
    if form == "json":
        print(json.dumps(report.as_json(), indent=2), flush=True)
        return
    scope = report.scope
    window = (
        f"{'the beginning' if scope.since == BEGINNING else scope.since.isoformat()} to "
        f"{'now' if scope.until == END_OF_TIME else scope.until.isoformat()}"
    )
    cities = f", cities {', '.join(scope.cities)}" if scope.cities else ""
    load = report.pinot_load
    print(
        f"verify: {window}{cities} ({report.seconds:.1f} s; Pinot: {load.queries} queries, "
        f"{load.docs_scanned:,} rows scanned, {load.broker_ms / 1000:.1f} s in the broker)"
    )
    kinds = drift.KINDS
    print(f"{'stream':<17}{'from':<27}{'buckets':>8}{'differ':>8}" + "".join(f"{k:>11}" for k in kinds) + "  in flight")
    for result in report.results:
        start = result.since.isoformat() if result.since and result.since != BEGINNING else "-"
        counts = "".join(f"{sum(1 for d in result.drifts if d.kind == k):>11}" for k in kinds)
        print(f"{result.stream:<17}{start:<27}{result.buckets:>8}{result.differing:>8}{counts}  {result.in_flight:>9}")
    lagging = {table: lag for table, lag in report.ingestion_lag.items() if lag}
    if lagging:
        print("Pinot behind Kafka: " + ", ".join(f"{table} {lag:,} messages" for table, lag in lagging.items()))
    if report.equal:
        print("equal: Pinot holds what PostgreSQL holds")
        return
    print()
    for d in report.drifts:
        print(f"{d.stream:<17}{d.kind:<12}{d.aggregate_id}  {d.detail}")
    found = ", ".join(f"{stream} {kind} {n}" for (stream, kind), n in sorted(drift.summary(report.drifts).items()))
    print(f"\ndrift: {len(report.drifts)} aggregates ({found})")
    if any(d.kind in ("missing", "stale") for d in report.drifts):
        print("missing, stale: `nibble verify --repair` re-publishes their current state (the relay must run)")
    for kind, advice in ADVICE.items():
        if any(d.kind == kind for d in report.drifts):
            print(f"{kind}: {advice}")
