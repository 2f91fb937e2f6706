-- Rows still to do (for the progress line's ETA).
SELECT count(*)
FROM {table}
WHERE id > %(after)s
  AND updated_at >= %(since)s
