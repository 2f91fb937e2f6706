-- The lane index of the new count (migration 0026), built while the fence keeps every relay out of the
-- outbox; writers wait for the build (seconds for a backlog of a million rows, milliseconds for a drained one).
SELECT public.outbox_lane_index(%(schema)s, %(lane_count)s)
