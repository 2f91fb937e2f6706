-- Take the lease of one lane if no other session holds it: a session advisory lock, so the lease ends with
-- the connection that holds it (the relay's own), whatever way that connection ends.
SELECT pg_try_advisory_lock(%(lane_class)s, hashtext(%(schema)s || '/' || %(lane)s::int))
