-- The delivery_events history in [since, until): aggregate, outbox position and event id of each row.
-- columns: delivery_id text, outbox_position count, event_id text
SELECT delivery_id, outbox_position, event_id
FROM delivery_events
WHERE occurred_at >= %(since)s AND occurred_at < %(until)s
  AND city IN (%(cities)s) -- if cities
LIMIT 1000000
