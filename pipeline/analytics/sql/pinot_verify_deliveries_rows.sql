-- Pinot's deliveries created in [since, until) (or those of `ids`): the compared values, then their origin.
-- columns: delivery_id text, city text, order_id text, driver_id text, status text, created_at time, promised_at time, delivered_at time, outbox_position count, event_type text
SELECT delivery_id, city, order_id, driver_id, status, created_at, promised_at, delivered_at, outbox_position,
  event_type
FROM deliveries
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND city IN (%(cities)s) -- if cities
  AND delivery_id IN (%(ids)s) -- if ids
LIMIT 1000000
