"""What operators do to the relays from outside their loop: read each outbox's status and switch its lane
count (fenced). The relay loop itself is relay.py; the lane rules are lanes.py."""

from __future__ import annotations

import logging

import psycopg

from connectors import postgres
from pipeline.config import Settings
from pipeline.errors import NibbleError
from pipeline.outbox.relay import APPLICATION_NAME
from pipeline.outbox.store import OutboxStore

log = logging.getLogger("nibble.relay")


class LaneSwitchFailed(NibbleError):
    """A lane-count switch could not run; nothing changed."""


def status(settings: Settings) -> list[dict[str, object]]:
    """Per outbox: backlog, age of the oldest unpublished event, dead letters, lane count and which relay
    (backend pid) holds which lanes."""
    rows = []
    with postgres.connect(settings.endpoints.database_url, "nibble-relay-status") as conn:
        for schema in settings.relay.outbox_schemas:
            store = OutboxStore(schema)
            backlog = store.backlog(conn)
            lanes_now = store.lane_state(conn, APPLICATION_NAME)
            holders: dict[int, list[int]] = {}
            for lane, pid in sorted(lanes_now.holders.items()):
                holders.setdefault(pid, []).append(lane)
            rows.append(
                {
                    "outbox": schema,
                    "backlog_rows": backlog.rows,
                    "oldest_age_s": round(backlog.oldest_age_s, 3),
                    "dead_letter_rows": backlog.dead_letter_rows,
                    "lane_count": lanes_now.lane_count,
                    "lanes_by_relay_pid": holders,
                    "switching": lanes_now.fence_requested,
                }
            )
    return rows


def switch_lane_count(settings: Settings, schema: str, lane_count: int, timeout_s: float) -> int:
    """Change an outbox's lane count, fenced: every relay leaves the outbox (finishing its batch in flight)
    before the count changes, so no aggregate's events are ever in two lanes at once. Returns the old count."""
    store = OutboxStore(schema)
    with postgres.connect(settings.endpoints.database_url, "nibble-relay-lanes") as conn:
        previous = store.lane_state(conn, APPLICATION_NAME).lane_count
        try:
            store.switch_lane_count(conn, lane_count, timeout_s)
        except psycopg.errors.LockNotAvailable:
            raise LaneSwitchFailed(
                f"the relays did not leave {schema} within {timeout_s:g} s (one may be stuck waiting for Kafka); "
                "nothing changed"
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise LaneSwitchFailed(f"{exc.diag.message_primary}: run it as the database owner") from None
    log.info("lane count switched", extra={"outbox": schema, "from": previous, "to": lane_count})
    return previous
