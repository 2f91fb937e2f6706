-- Orders per minute by status (time series): orders placed each minute, split by the status they are in now.
-- Orders placed within the window are read from `orders` (it holds every order placed since the window's start),
-- older ones, all closed by then, from the order ledger (all history, no DISTINCTCOUNT; docs/pinot.md): those
-- cancelled, and the others, delivered.
-- columns: minute time, status text, orders count
-- order by: minute, status
SELECT placed_minute AS minute, status, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at >= %(window_start)s AND placed_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY placed_minute, status
LIMIT 100000
UNION ALL
SELECT placed_minute AS minute, 'cancelled' AS status, SUM(cancelled) AS orders
FROM order_ledger
WHERE placed_at >= %(since)s AND placed_at < %(window_start)s AND placed_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY placed_minute
HAVING orders > 0
LIMIT 100000
UNION ALL
SELECT placed_minute AS minute, 'delivered' AS status, SUM(orders) - SUM(cancelled) AS orders
FROM order_ledger
WHERE placed_at >= %(since)s AND placed_at < %(window_start)s AND placed_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY placed_minute
HAVING orders > 0
LIMIT 100000
