-- Rows still to do (for the progress line's ETA).
SELECT count(*)
FROM {table}
WHERE (%(after)s::uuid IS NULL OR id > %(after)s)
  AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s)
