-- One backfill per database at a time: a session lock, released when the backfill's connection ends.
SELECT pg_try_advisory_lock(%(key)s)
