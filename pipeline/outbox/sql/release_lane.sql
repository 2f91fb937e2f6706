-- Hand one lane back (between batches: nothing of it is in flight), for a relay below its share to take.
SELECT pg_advisory_unlock(%(lane_class)s, hashtext(%(schema)s || '/' || %(lane)s::int))
