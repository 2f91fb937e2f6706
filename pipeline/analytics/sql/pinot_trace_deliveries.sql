-- The order's delivery row in Pinot's state table: the event it holds.
-- columns: event_id text, outbox_position count, status text
SELECT event_id, outbox_position, status
FROM deliveries
WHERE order_id = %(order_id)s
LIMIT 10
