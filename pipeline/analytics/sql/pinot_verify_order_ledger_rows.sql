-- The order ledger's sums per order placed in [since, until) (or of `ids`).
-- columns: order_id text, orders count, cancelled count, gmv_cents money, subtotal_cents money, items count
SELECT order_id, SUM(orders), SUM(cancelled), SUM(gmv_cents), SUM(subtotal_cents), SUM(items)
FROM order_ledger
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city IN (%(cities)s) -- if cities
  AND order_id IN (%(ids)s) -- if ids
GROUP BY order_id
LIMIT 1000000
