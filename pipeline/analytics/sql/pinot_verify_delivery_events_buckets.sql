-- The delivery_events history per bucket of occurred_at (grain): its rows and distinct outbox positions, equal
-- unless an event is held twice.
-- columns: bucket time, rows count, positions count
SELECT DATETRUNC(%(grain)s, occurred_at), COUNT(*), DISTINCTCOUNT(outbox_position)
FROM delivery_events
WHERE occurred_at >= %(since)s AND occurred_at < %(until)s
  AND city IN (%(cities)s) -- if cities
GROUP BY DATETRUNC(%(grain)s, occurred_at)
LIMIT 1000000
