"""The outboxes under churn (migration 0017, docs/migrations.md "The outbox under churn"): autovacuum keeps
up with a relay's deletes, so the claim stops fetching deleted rows, against the real PostgreSQL."""

from __future__ import annotations

import psycopg
from psycopg import sql

from bench.bench_outbox_churn import INSERT_EVENTS, claim_pages
from pipeline.outbox.store import OutboxStore
from tests.support.polling import wait_until

OUTBOXES = ("driver_service.outbox", "order_service.outbox", "restaurant_service.outbox")
BATCH = 5_000


def test_every_outbox_is_vacuumed_unthrottled_after_1000_dead_rows(db: str) -> None:
    with psycopg.connect(db) as conn:
        options = conn.execute(
            "SELECT c.oid::regclass::text, c.reloptions FROM pg_class c WHERE c.oid = ANY(%s::regclass[]) ORDER BY 1",
            (list(OUTBOXES),),
        ).fetchall()
    expected = [
        "autovacuum_vacuum_scale_factor=0",
        "autovacuum_vacuum_threshold=1000",
        "autovacuum_vacuum_cost_delay=0",
    ]
    assert options == [(outbox, expected) for outbox in OUTBOXES]


def test_autovacuum_clears_a_relays_deleted_rows_from_the_claims_path(db: str) -> None:
    outbox = OutboxStore("order_service")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(INSERT_EVENTS, (BATCH,))
        for _ in range(4):  # the relay's churn: insert a batch, claim it, delete it once published
            conn.execute(INSERT_EVENTS, (BATCH,))
            claimed = outbox.claim_batch(conn, BATCH, 8, list(range(8)))
            outbox.delete_published(conn, [row.position for row in claimed])
        with_dead_rows = claim_pages(conn, BATCH)

        def vacuumed() -> bool:
            row = conn.execute(
                sql.SQL(
                    "SELECT autovacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relid = {}::regclass"
                ).format(sql.Literal("order_service.outbox"))
            ).fetchone()
            return row is not None and row[0] > 0 and row[1] == 0

        wait_until(vacuumed, timeout_s=180, what="autovacuum of order_service.outbox")
        assert claim_pages(conn, BATCH) < with_dead_rows / 2, "the claim no longer fetches the 20,000 deleted rows"
