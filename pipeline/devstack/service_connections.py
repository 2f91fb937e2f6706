"""One connection per service login (migration 0021) for a writer that works across services, as the
generator does: each statement runs as the service whose schema it names first (its target, in
`INSERT INTO order_service.…` or `UPDATE driver_service.… FROM …`), so no service ever writes another's
tables; `commit` ends every service's transaction. Before a statement runs as one service, the other services'
open transactions are committed: services share a little state (a customer's pseudonym, which an order or a
ticket may create first: migration 0027), and a statement waiting on another of this writer's own
connections would wait forever.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

import psycopg

from connectors import postgres
from pipeline.config import SERVICE_LOGINS, login_url
from pipeline.errors import NibbleError

SCHEMA = re.compile(r"\b(" + "|".join(SERVICE_LOGINS) + r")\.")


class ServiceConnections:
    """Connections opened on first use, not in autocommit, each with `nibble.actor` set for its session (the
    audit's actor: 0022)."""

    def __init__(self, database_url: str, application_name: str, actor: str) -> None:
        self.database_url = database_url
        self.application_name = application_name
        self.actor = actor
        self.connections: dict[str, psycopg.Connection] = {}

    def of(self, service: str) -> psycopg.Connection:
        conn = self.connections.get(service)
        if conn is None:
            conn = postgres.connect(login_url(self.database_url, service), self.application_name, autocommit=False)
            conn.execute("SELECT set_config('nibble.actor', %s, false)", (self.actor,))
            conn.commit()
            self.connections[service] = conn
        return conn

    def execute(self, query: str, params: Any = None) -> psycopg.Cursor[Any]:
        match = SCHEMA.search(query)
        if match is None:
            raise NibbleError(f"a statement that names no service schema: {query[:60]!r}")
        conn = self.of(match.group(1))
        for other in self.connections.values():
            if other is not conn and other.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
                other.commit()
        return conn.execute(query, params)

    def commit(self) -> None:
        for conn in self.connections.values():
            conn.commit()

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()

    def __enter__(self) -> ServiceConnections:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # As a psycopg connection's context: commit on success, roll back on an error.
        if kind is None:
            self.commit()
        else:
            for conn in self.connections.values():
                conn.rollback()
        self.close()
