-- Top restaurants by GMV in the window (cancelled orders excluded), with their order count.
-- columns: restaurant_id text, restaurant_name text, city text, gmv_cents money, orders count
SELECT restaurant_id, restaurant_name, city, SUM(total_cents) AS gmv_cents, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s AND status <> 'cancelled'
  AND city = %(city)s -- if city
GROUP BY restaurant_id, restaurant_name, city
ORDER BY SUM(total_cents) DESC, restaurant_id
LIMIT %(limit)s
