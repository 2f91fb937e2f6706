-- The order's row in Pinot's state table: the event it holds.
-- columns: event_id text, outbox_position count, status text, total_cents money
SELECT event_id, outbox_position, status, total_cents
FROM orders
WHERE order_id = %(order_id)s
LIMIT 10
