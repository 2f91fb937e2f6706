-- Active orders right now by city and status: placed but neither delivered nor cancelled.
-- columns: city text, status text, orders count
SELECT city, status, COUNT(*) AS orders
FROM orders
WHERE status NOT IN ('delivered', 'cancelled')
  AND city = %(city)s -- if city
GROUP BY city, status
ORDER BY city, status
LIMIT 10000
