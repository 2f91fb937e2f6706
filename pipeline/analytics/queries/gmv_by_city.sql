-- GMV by city per minute, hour or day: gross merchandise value (order totals incl. fees and tips, cancelled orders excluded) in cents.
-- columns: city text, period time, gmv_cents money, orders count
-- window: whole hours
SELECT city, GRAIN_COLUMN AS period, SUM(gmv_cents) AS gmv_cents, SUM(orders) - SUM(cancelled) AS orders
FROM order_ledger
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND city = %(city)s -- if city
GROUP BY city, GRAIN_COLUMN
HAVING orders > 0
ORDER BY city, GRAIN_COLUMN
LIMIT 100000
