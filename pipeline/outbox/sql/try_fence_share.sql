-- Join the relays publishing one outbox: the shared form of the outbox's fence lock. It fails while a
-- lane-count switch holds or waits for the exclusive form (and while a relay from before lanes, which takes
-- the same lock exclusively as its single lease, runs).
SELECT pg_try_advisory_lock_shared(%(fence_class)s, hashtext(%(schema)s))
