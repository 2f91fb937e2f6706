-- The lane-count switch waits here, under lock_timeout, until every relay has left the outbox (each one
-- sees the waiting exclusive request, finishes its batch and releases its lanes and its share).
SELECT pg_advisory_lock(%(fence_class)s, hashtext(%(schema)s))
