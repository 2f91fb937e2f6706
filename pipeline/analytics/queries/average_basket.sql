-- Average basket by city: mean item subtotal (cents) and mean number of items per order (cancelled orders excluded).
-- columns: city text, avg_subtotal_cents money, avg_items number, orders count
SELECT city, AVG(subtotal_cents) AS avg_subtotal_cents, AVG(item_count) AS avg_items, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s AND status <> 'cancelled'
  AND city = %(city)s -- if city
GROUP BY city
ORDER BY city
LIMIT 1000
