-- The outboxes under churn (docs/migrations.md, "The outbox under churn"): every row is inserted once and
-- deleted once the relay has published it, so each outbox is a queue whose dead rows lie at the head the
-- claim reads from (claim_batch.sql walks the position index from there, fetching each dead row from the
-- heap until VACUUM removes it). 0008 already has autovacuum visit an outbox after every 1,000 dead rows;
-- here its vacuum runs unthrottled: the table is small once vacuumed, and a throttled vacuum of a queue only
-- lets the dead rows, the heap and the indexes grow behind it (bench/bench_outbox_churn.py).
-- No fillfactor: a row is never updated, so space kept free on a page for updates would stay unused.

ALTER TABLE order_service.outbox SET (autovacuum_vacuum_cost_delay = 0);
ALTER TABLE driver_service.outbox SET (autovacuum_vacuum_cost_delay = 0);
ALTER TABLE restaurant_service.outbox SET (autovacuum_vacuum_cost_delay = 0);
