UPDATE public.backfill_progress
SET finished_at = now(), updated_at = now()
WHERE table_name = %(table)s
