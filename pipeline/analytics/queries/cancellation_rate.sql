-- Cancellation rate by restaurant: share of its orders placed in the window that ended cancelled.
-- columns: restaurant_id text, restaurant_name text, orders count, cancelled count, cancellation_rate ratio
SELECT restaurant_id, restaurant_name, COUNT(*) AS orders,
       SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled,
       SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) * 1.0 / COUNT(*) AS cancellation_rate
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY restaurant_id, restaurant_name
ORDER BY SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) * 1.0 / COUNT(*) DESC, restaurant_name
LIMIT 10000
