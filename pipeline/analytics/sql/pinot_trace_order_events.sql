-- The order's events in Pinot's history, with the segment that holds each (its name carries the partition).
-- columns: event_id text, event_type text, source_txid count, outbox_position count, occurred_at time, status text, total_cents money, segment text
SELECT event_id, event_type, source_txid, outbox_position, occurred_at, status, total_cents, $segmentName
FROM order_events
WHERE order_id = %(order_id)s
ORDER BY occurred_at, outbox_position
LIMIT 10000
