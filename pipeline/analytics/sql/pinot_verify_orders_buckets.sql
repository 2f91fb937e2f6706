-- Pinot's orders per bucket of placed_at (grain), status and payment status: count and sums.
-- columns: bucket time, status text, payment_status text, orders count, total_cents money, subtotal_cents money, items count
SELECT DATETRUNC(%(grain)s, placed_at), status, payment_status, COUNT(*), SUM(total_cents), SUM(subtotal_cents),
  SUM(item_count)
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city IN (%(cities)s) -- if cities
GROUP BY DATETRUNC(%(grain)s, placed_at), status, payment_status
LIMIT 1000000
