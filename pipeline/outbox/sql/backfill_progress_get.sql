SELECT since, last_id, rows_done, events, started_at, finished_at
FROM public.backfill_progress
WHERE table_name = %(table)s
