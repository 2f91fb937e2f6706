-- The delivery_events history of events that occurred in [since, until) and sit in [from_position, to_position),
-- per bucket of `positions` outbox positions: its rows and distinct positions, equal unless an event is
-- held twice. Buckets of position, not of time: a copy re-sent later shares the event's position, not its
-- time.
-- columns: bucket count, rows count, positions count
SELECT outbox_position - MOD(outbox_position, %(positions)s), COUNT(*), DISTINCTCOUNT(outbox_position)
FROM delivery_events
WHERE occurred_at >= %(since)s AND occurred_at < %(until)s
  AND outbox_position >= %(from_position)s AND outbox_position < %(to_position)s
  AND city IN (%(cities)s) -- if cities
GROUP BY outbox_position - MOD(outbox_position, %(positions)s)
LIMIT 1000000
