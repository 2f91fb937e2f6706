-- Driver utilisation: per driver, deliveries completed in the window and the share of the window spent on them
-- (from assignment to hand-over).
-- From each delivery's completion event in `delivery_events` (all history since the pipeline was installed;
-- docs/pinot.md).
-- columns: driver_id text, city text, deliveries count, busy_minutes number, utilisation ratio
SELECT driver_id, city, COUNT(*) AS deliveries,
       SUM(delivered_at - assigned_at) / 60000 AS busy_minutes,
       SUM(delivered_at - assigned_at) * 1.0 / (%(until)s - %(since)s) AS utilisation
FROM delivery_events
WHERE event_type = 'DeliveryCompleted' AND delivered_at >= %(since)s AND delivered_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY driver_id, city
ORDER BY SUM(delivered_at - assigned_at) DESC, driver_id
LIMIT 10000
