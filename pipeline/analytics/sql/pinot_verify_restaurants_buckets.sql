-- Pinot's restaurants per city and activity, updated at or after `since` (the retention cutoff).
-- columns: bucket text, is_active text, restaurants count
SELECT city, is_active, COUNT(*)
FROM restaurants
WHERE updated_at >= %(since)s
  AND city IN (%(cities)s) -- if cities
GROUP BY city, is_active
LIMIT 1000000
