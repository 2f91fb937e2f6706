-- The first row in the range of a locked chunk that the chunk does not hold (a writer had it, or it
-- committed since): the chunk is done only up to it.
SELECT id
FROM {table}
WHERE id > %(after)s
  AND id < %(last)s
  AND id <> ALL (%(locked)s::uuid[])
  AND updated_at >= %(since)s
ORDER BY id
LIMIT 1
