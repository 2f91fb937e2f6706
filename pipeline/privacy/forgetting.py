"""`nibble forget USER`: nothing in Kafka or Pinot leads back to a customer any more (docs/security.md,
"Analytics without personal data").

Analytics knows a customer only by the random pseudonym of migration 0027, linked to them in one place,
order_service.customer_pseudonyms, and copied onto their orders and tickets. Forgetting deletes the link and
clears the copies, each table as its own service's login: every visible order or ticket then publishes its
state without the pseudonym (Pinot's upsert tables and the compacted topics' newest events hold none), and the
pseudonyms already in the event history name nobody, since no table holds them any more.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from connectors import postgres
from connectors.postgres import sql_file
from pipeline.config import acting_user, login_url
from pipeline.errors import NibbleError, UsageError

ROUNDS = 4  # the last finds nothing, unless the customer keeps writing while being forgotten


class ForgetError(NibbleError):
    """The database has no pseudonyms (not migrated), or the customer kept getting one while being forgotten."""


@dataclass(frozen=True)
class Forgotten:
    links: int  # pseudonym links deleted
    orders: int  # orders whose pseudonym was cleared
    tickets: int  # tickets likewise


def parse_customer(text: str) -> uuid.UUID:
    """A customer's id (user_service.users.id) from the command line."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise UsageError(f"{text!r} is not a customer id (a uuid of user_service.users)") from None


def _run(database_url: str, login: str, query: str, customer: uuid.UUID) -> tuple[int, ...]:
    try:
        with postgres.connect(login_url(database_url, login), "nibble-forget") as conn, conn.transaction():
            conn.execute("SELECT set_config('nibble.actor', %s, true)", (acting_user(),))
            row = conn.execute(sql_file("pipeline.privacy", query), {"customer": customer}).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise ForgetError(
            "the database of NIBBLE_DATABASE_URL has no pseudonyms yet (run `nibble migrate`): "
            f"{exc.diag.message_primary}"
        ) from None
    return tuple(row)


def forget(database_url: str, customer: uuid.UUID, progress: Callable[[str], None]) -> Forgotten:
    """Delete the customer's pseudonym link and clear its copies, in rounds until one finds nothing left: a
    ticket or order written meanwhile takes the link (or a new one), which the next round clears."""
    total = Forgotten(0, 0, 0)
    for _ in range(ROUNDS):
        (tickets,) = _run(database_url, "admin_service", "forget_tickets", customer)
        links, orders = _run(database_url, "order_service", "forget_orders", customer)
        if not (tickets or links or orders):
            return total
        total = Forgotten(total.links + links, total.orders + orders, total.tickets + tickets)
        progress(f"{customer}: {links} pseudonym link deleted, {orders} orders and {tickets} tickets cleared")
    raise ForgetError(f"{customer} was given a pseudonym again in each of {ROUNDS} rounds: stop their writers, rerun")
