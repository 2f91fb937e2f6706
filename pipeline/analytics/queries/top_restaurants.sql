-- Top restaurants by GMV in the window (cancelled orders excluded), with their order count.
-- columns: restaurant_id text, restaurant_name text, city text, gmv_cents money, orders count
-- window: whole hours
SELECT restaurant_id, restaurant_name, city, SUM(gmv_cents) AS gmv_cents, SUM(orders) - SUM(cancelled) AS orders
FROM order_ledger
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND city = %(city)s -- if city
GROUP BY restaurant_id, restaurant_name, city
HAVING orders > 0
ORDER BY gmv_cents DESC, restaurant_id
LIMIT %(limit)s
