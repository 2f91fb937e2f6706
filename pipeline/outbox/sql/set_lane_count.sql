-- The new lane count of one outbox (run only while fence.sql's lock is held).
INSERT INTO public.outbox_lanes (outbox, lane_count) VALUES (%(schema)s, %(lane_count)s)
ON CONFLICT (outbox) DO UPDATE SET lane_count = excluded.lane_count
