-- Delivery time p50/p90/p99 by city and hour: minutes from delivery creation (order confirmed) to hand-over.
-- From each delivery's completion event in `delivery_events` (all history since the pipeline was installed;
-- docs/pinot.md).
-- columns: city text, hour time, deliveries count, p50_minutes number, p90_minutes number, p99_minutes number
SELECT city, DATETRUNC('HOUR', delivered_at) AS hour, COUNT(*) AS deliveries,
       PERCENTILE(delivered_at - created_at, 50) / 60000 AS p50_minutes,
       PERCENTILE(delivered_at - created_at, 90) / 60000 AS p90_minutes,
       PERCENTILE(delivered_at - created_at, 99) / 60000 AS p99_minutes
FROM delivery_events
WHERE event_type = 'DeliveryCompleted' AND delivered_at >= %(since)s AND delivered_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY city, DATETRUNC('HOUR', delivered_at)
ORDER BY city, DATETRUNC('HOUR', delivered_at)
LIMIT 100000
