-- In the chunk's own transaction: its events and its progress commit together.
UPDATE public.backfill_progress
SET last_id = %(last)s, rows_done = rows_done + %(rows)s, events = events + %(events)s, updated_at = now()
WHERE table_name = %(table)s
