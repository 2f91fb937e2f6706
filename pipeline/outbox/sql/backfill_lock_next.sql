-- The next row, waited for while a writer holds it: the transaction holds no other row lock, so the wait
-- cannot deadlock.
SELECT id
FROM {table}
WHERE (%(after)s::uuid IS NULL OR id > %(after)s)
  AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s)
ORDER BY id
LIMIT 1
FOR SHARE
