-- Average basket by city: mean item subtotal (cents) and mean number of items per order (cancelled orders excluded).
-- columns: city text, avg_subtotal_cents money, avg_items number, orders count
-- window: whole hours
SELECT city, SUM(subtotal_cents) / (SUM(orders) - SUM(cancelled)) AS avg_subtotal_cents,
       SUM(items) / (SUM(orders) - SUM(cancelled)) AS avg_items, SUM(orders) - SUM(cancelled) AS orders
FROM order_ledger
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND city = %(city)s -- if city
GROUP BY city
HAVING orders > 0
ORDER BY city
LIMIT 1000
