-- Active deliveries right now by city and status: waiting for a driver, assigned, or on the road.
-- columns: city text, status text, deliveries count
SELECT city, status, COUNT(*) AS deliveries
FROM deliveries
WHERE status IN ('pending', 'assigned', 'picked_up')
  AND city = %(city)s -- if city
GROUP BY city, status
ORDER BY city, status
LIMIT 10000
