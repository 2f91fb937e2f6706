-- Orders per minute by status (time series): orders placed each minute, split by the status they are in now.
-- columns: minute time, status text, orders count
SELECT DATETRUNC('MINUTE', placed_at) AS minute, status, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY DATETRUNC('MINUTE', placed_at), status
ORDER BY DATETRUNC('MINUTE', placed_at), status
LIMIT 100000
