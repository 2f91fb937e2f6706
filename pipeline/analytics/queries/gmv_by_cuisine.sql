-- GMV by cuisine per hour or day: which cuisines sell, in cents (cancelled orders excluded).
-- columns: cuisine text, period time, gmv_cents money, orders count
SELECT cuisine, DATETRUNC(%(grain)s, placed_at) AS period, SUM(total_cents) AS gmv_cents, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s AND status <> 'cancelled'
  AND city = %(city)s -- if city
GROUP BY cuisine, DATETRUNC(%(grain)s, placed_at)
ORDER BY cuisine, DATETRUNC(%(grain)s, placed_at)
LIMIT 100000
