-- Late deliveries by city: how many were delivered after the time promised to the customer.
-- From each delivery's completion event in `delivery_events` (all history since the pipeline was installed;
-- docs/pinot.md).
-- columns: city text, delivered count, late count, late_share ratio
SELECT city, COUNT(*) AS delivered,
       SUM(CASE WHEN delivered_at > promised_at THEN 1 ELSE 0 END) AS late,
       SUM(CASE WHEN delivered_at > promised_at THEN 1 ELSE 0 END) * 1.0 / COUNT(*) AS late_share
FROM delivery_events
WHERE event_type = 'DeliveryCompleted' AND delivered_at >= %(since)s AND delivered_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY city
ORDER BY city
LIMIT 1000
