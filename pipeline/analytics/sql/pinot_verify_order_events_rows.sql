-- The order_events history of events that occurred in [since, until) and sit in [from_position, to_position):
-- aggregate, outbox position and event id of each row.
-- columns: order_id text, outbox_position count, event_id text
SELECT order_id, outbox_position, event_id
FROM order_events
WHERE occurred_at >= %(since)s AND occurred_at < %(until)s
  AND outbox_position >= %(from_position)s AND outbox_position < %(to_position)s
  AND city IN (%(cities)s) -- if cities
LIMIT 1000000
