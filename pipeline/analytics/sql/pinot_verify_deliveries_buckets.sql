-- Pinot's deliveries per bucket of created_at (grain) and status: how many, with a driver, delivered.
-- columns: bucket time, status text, deliveries count, with_driver count, delivered count
SELECT DATETRUNC(%(grain)s, created_at), status, COUNT(*),
  SUM(CASE WHEN driver_id = 'null' THEN 0 ELSE 1 END), SUM(CASE WHEN delivered_at > 0 THEN 1 ELSE 0 END)
FROM deliveries
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND city IN (%(cities)s) -- if cities
GROUP BY DATETRUNC(%(grain)s, created_at), status
LIMIT 1000000
