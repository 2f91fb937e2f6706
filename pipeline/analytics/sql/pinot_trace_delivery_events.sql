-- The events of the order's delivery in Pinot's history.
-- columns: event_id text, event_type text, source_txid count, outbox_position count, occurred_at time, status text, driver_id text, segment text
SELECT event_id, event_type, source_txid, outbox_position, occurred_at, status, driver_id, $segmentName
FROM delivery_events
WHERE order_id = %(order_id)s
ORDER BY occurred_at, outbox_position
LIMIT 10000
