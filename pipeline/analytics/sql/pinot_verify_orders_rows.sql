-- Pinot's orders placed in [since, until) (or those of `ids`): the compared values, then where each came from.
-- columns: order_id text, city text, restaurant_id text, status text, payment_status text, item_count count, subtotal_cents money, total_cents money, placed_at time, outbox_position count, event_type text
SELECT order_id, city, restaurant_id, status, payment_status, item_count, subtotal_cents, total_cents, placed_at,
  outbox_position, event_type
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city IN (%(cities)s) -- if cities
  AND order_id IN (%(ids)s) -- if ids
LIMIT 1000000
