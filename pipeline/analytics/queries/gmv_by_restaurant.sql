-- GMV by restaurant per minute, hour or day, in cents (cancelled orders excluded).
-- columns: restaurant_id text, restaurant_name text, period time, gmv_cents money, orders count
-- window: whole hours
SELECT restaurant_id, restaurant_name, GRAIN_COLUMN AS period, SUM(gmv_cents) AS gmv_cents,
       SUM(orders) - SUM(cancelled) AS orders
FROM order_ledger
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND city = %(city)s -- if city
GROUP BY restaurant_id, restaurant_name, GRAIN_COLUMN
HAVING orders > 0
ORDER BY restaurant_name, GRAIN_COLUMN
LIMIT 100000
