-- Pinot's drivers per city, status and activity, updated at or after `since` (the retention cutoff).
-- columns: bucket text, status text, is_active text, drivers count
SELECT city, status, is_active, COUNT(*)
FROM drivers
WHERE updated_at >= %(since)s
  AND city IN (%(cities)s) -- if cities
GROUP BY city, status, is_active
LIMIT 1000000
