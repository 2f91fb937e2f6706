-- Cancellation rate by restaurant: share of its orders placed in the window that ended cancelled.
-- columns: restaurant_id text, restaurant_name text, orders count, cancelled count, cancellation_rate ratio
-- window: whole hours
SELECT restaurant_id, restaurant_name, SUM(orders) AS orders, SUM(cancelled) AS cancelled,
       SUM(cancelled) / SUM(orders) AS cancellation_rate
FROM order_ledger
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND city = %(city)s -- if city
GROUP BY restaurant_id, restaurant_name
HAVING orders > 0
ORDER BY cancellation_rate DESC, restaurant_name
LIMIT 10000
