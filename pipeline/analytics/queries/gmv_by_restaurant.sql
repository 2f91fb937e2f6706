-- GMV by restaurant per hour or day, in cents (cancelled orders excluded).
-- columns: restaurant_id text, restaurant_name text, period time, gmv_cents money, orders count
SELECT restaurant_id, restaurant_name, DATETRUNC(%(grain)s, placed_at) AS period, SUM(total_cents) AS gmv_cents,
       COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s AND status <> 'cancelled'
  AND city = %(city)s -- if city
GROUP BY restaurant_id, restaurant_name, DATETRUNC(%(grain)s, placed_at)
ORDER BY restaurant_name, DATETRUNC(%(grain)s, placed_at)
LIMIT 100000
