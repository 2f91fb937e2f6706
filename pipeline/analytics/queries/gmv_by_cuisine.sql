-- GMV by cuisine per minute, hour or day: which cuisines sell, in cents (cancelled orders excluded).
-- columns: cuisine text, period time, gmv_cents money, orders count
-- window: whole hours
SELECT cuisine, GRAIN_COLUMN AS period, SUM(gmv_cents) AS gmv_cents, SUM(orders) - SUM(cancelled) AS orders
FROM order_ledger
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND city = %(city)s -- if city
GROUP BY cuisine, GRAIN_COLUMN
HAVING orders > 0
ORDER BY cuisine, GRAIN_COLUMN
LIMIT 100000
