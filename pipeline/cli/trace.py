"""`nibble trace ORDER_ID [--format table|json]`: one order's state in PostgreSQL and each of its events on
the way to Pinot (docs/queries.md, "Lineage")."""

from __future__ import annotations

import argparse
import json

from pipeline.analytics.lineage import Trace, trace
from pipeline.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="one order from PostgreSQL to Pinot: its state, each event's transaction, outbox position, "
        "Kafka offset and Pinot rows",
    )
    parser.add_argument("order_id", metavar="ORDER_ID")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--no-kafka", action="store_true", help="skip the look-up of each event's Kafka offset")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    found = trace(settings, args.order_id, find_offsets=not args.no_kafka)
    if args.format == "json":
        print(json.dumps(found.as_json(), indent=2))
    else:
        show(found)
    return 0


def show(found: Trace) -> None:
    o = found.order
    ledger = "counted by the ledger" if o["counted"] else "not counted by the ledger yet (a backfill counts it)"
    print(
        f"order {o['order_id']} in PostgreSQL: {o['status']}, {o['item_count']} items, "
        f"total {o['total_cents'] / 100:.2f} {o['currency']}, payment {o['payment_status'] or '-'}"
    )
    print(
        f"  {o['city']}, {o['restaurant_name']}; placed {o['placed_at']:%Y-%m-%d %H:%M:%S%z}, "
        f"updated {o['updated_at']:%Y-%m-%d %H:%M:%S%z}; "
        + ("visible to analytics, " + ledger if o["visible"] else "invisible to analytics (never had items)")
    )
    if o["delivery_id"]:
        print(f"  delivery {o['delivery_id']}: {o['delivery_status']}, driver {o['driver_id'] or '-'}")
    print()
    print(f"{'occurred at (UTC)':<24}{'position':>9}{'tx':>10}  {'event':<20}{'Kafka':<28}Pinot")
    for e in found.events:
        if e.state == "published":
            where = f"{e.topic}/{_known(e.partition)}@{_known(e.offset)}"
            facts = " ".join(f"{k}={v}" for k, v in e.facts.items() if v is not None)
            pinot = f"{e.table} ({facts})" + ("; current state row" if e.current else "")
        else:
            where = f"({e.state}: not published)"
            pinot = e.facts["error"] or ""
        print(
            f"{e.occurred_at:%Y-%m-%d %H:%M:%S.%f}"[:23]
            + f" {e.position:>9}{e.txid:>10}  {e.event_type:<20}{where:<28}{pinot}"
        )


def _known(value: int | None) -> str:
    return "?" if value is None else str(value)
