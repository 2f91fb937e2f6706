-- The order's ledger entries in Pinot.
-- columns: event_id text, event_type text, source_txid count, outbox_position count, occurred_at time, orders count, cancelled count, gmv_cents money, segment text
SELECT event_id, event_type, source_txid, outbox_position, occurred_at, orders, cancelled, gmv_cents, $segmentName
FROM order_ledger
WHERE order_id = %(order_id)s
ORDER BY occurred_at, outbox_position
LIMIT 10000
