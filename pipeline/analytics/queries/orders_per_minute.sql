-- Orders per minute by status (time series): orders placed each minute, split by the status they are in now.
-- columns: minute time, status text, orders count
SELECT placed_minute AS minute, status, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY placed_minute, status
ORDER BY placed_minute, status
LIMIT 100000
