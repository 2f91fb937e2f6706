-- The order ledger's sums per bucket of placed_at (grain).
-- columns: bucket time, orders count, cancelled count, gmv_cents money, subtotal_cents money, items count
SELECT DATETRUNC(%(grain)s, placed_at), SUM(orders), SUM(cancelled), SUM(gmv_cents), SUM(subtotal_cents), SUM(items)
FROM order_ledger
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city IN (%(cities)s) -- if cities
GROUP BY DATETRUNC(%(grain)s, placed_at)
LIMIT 1000000
