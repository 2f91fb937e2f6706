-- Leave the relays publishing one outbox (after releasing every lane of it), so a lane-count switch may run.
SELECT pg_advisory_unlock_shared(%(fence_class)s, hashtext(%(schema)s))
