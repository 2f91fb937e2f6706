"""`nibble forget USER`: a customer's pseudonym unlinked, so nothing in Kafka or Pinot leads back to them."""

from __future__ import annotations

import argparse

from pipeline.config import Settings
from pipeline.privacy.forgetting import forget, parse_customer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forget",
        help="unlink a customer from the pseudonym analytics knows them by",
        description="Delete the customer's pseudonym link (order_service.customer_pseudonyms) and clear the "
        "pseudonym from their orders and tickets, each as its service's login in the database of "
        "NIBBLE_DATABASE_URL; each visible order and ticket publishes its state without it. The pseudonyms "
        "already in Kafka and Pinot then name nobody. Their account and orders in PostgreSQL are not changed. "
        "docs/security.md, 'Analytics without personal data'.",
    )
    parser.add_argument("user", help="the customer's id (user_service.users.id)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    customer = parse_customer(args.user)
    done = forget(settings.endpoints.database_url, customer, lambda line: print(f"[forget] {line}", flush=True))
    if done.links or done.orders or done.tickets:
        print(f"{customer} forgotten: {done.orders} orders and {done.tickets} tickets no longer carry their pseudonym")
    else:
        print(f"{customer}: no pseudonym held, nothing to forget")
    return 0
