-- GMV by city per hour or day: gross merchandise value (order totals incl. fees and tips, cancelled orders excluded) in cents.
-- columns: city text, period time, gmv_cents money, orders count
SELECT city, DATETRUNC(%(grain)s, placed_at) AS period, SUM(total_cents) AS gmv_cents, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s AND status <> 'cancelled'
  AND city = %(city)s -- if city
GROUP BY city, DATETRUNC(%(grain)s, placed_at)
ORDER BY city, DATETRUNC(%(grain)s, placed_at)
LIMIT 100000
