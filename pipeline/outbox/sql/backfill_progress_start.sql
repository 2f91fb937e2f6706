-- A new run of one table (first run, or --restart): progress from zero.
INSERT INTO public.backfill_progress (table_name, since)
VALUES (%(table)s, %(since)s)
ON CONFLICT (table_name) DO UPDATE
SET since = EXCLUDED.since, last_id = NULL, rows_done = 0, events = 0, started_at = now(), updated_at = now(),
    finished_at = NULL
