-- What every relay plans its lanes from (outbox/lanes.py): the outbox's lane count, the live relays of this
-- database (sessions named like the relay's), who holds which lane lease (a session advisory lock per lane),
-- and whether a lane-count switch holds or waits for the outbox's fence (the exclusive form of the lock
-- every relay holds shared while it publishes the outbox). Advisory locks belong to one database; pg_locks
-- shows the whole cluster's.
WITH config AS (
    SELECT coalesce((SELECT lane_count FROM public.outbox_lanes WHERE outbox = %(schema)s), 1) AS lane_count
),
held AS (
    SELECT lane, l.pid
    FROM config, generate_series(0, config.lane_count - 1) AS lane
    JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = %(lane_class)s::oid AND l.objid = hashtext(%(schema)s || '/' || lane)::oid
)
SELECT
    (SELECT lane_count FROM config) AS lane_count,
    ARRAY(
        SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = %(application)s
    ) AS relays,
    ARRAY(SELECT lane FROM held ORDER BY lane) AS lanes,
    ARRAY(SELECT pid FROM held ORDER BY lane) AS holders,
    EXISTS (
        SELECT 1 FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.mode = 'ExclusiveLock' AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = %(fence_class)s::oid AND l.objid = hashtext(%(schema)s)::oid
    ) AS fence_requested
