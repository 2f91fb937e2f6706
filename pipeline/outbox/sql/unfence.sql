-- The switch is done: relays may join the outbox again, with the new lane count.
SELECT pg_advisory_unlock(%(fence_class)s, hashtext(%(schema)s))
