-- Orders per minute by status (time series): orders placed each minute, split by the status they are in now.
-- Orders under way are read from `orders` (it holds the window), closed ones from `order_events` (all
-- history; docs/pinot.md): each order once, whichever of its events (closing, later, snapshot) carry the status.
-- columns: minute time, status text, orders count
-- order by: minute, status
SELECT placed_minute AS minute, status, COUNT(*) AS orders
FROM orders
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND status NOT IN ('delivered', 'cancelled')
  AND city = %(city)s -- if city
GROUP BY placed_minute, status
LIMIT 100000
UNION ALL
SELECT DATETRUNC('MINUTE', placed_at) AS minute, status, DISTINCTCOUNT(order_id) AS orders
FROM order_events
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND status IN ('delivered', 'cancelled')
  AND city = %(city)s -- if city
GROUP BY DATETRUNC('MINUTE', placed_at), status
LIMIT 100000
