-- The next row, waited for while a writer holds it: the transaction holds no other row lock, so the wait
-- cannot deadlock.
SELECT id
FROM {table}
WHERE id > %(after)s
  AND updated_at >= %(since)s
ORDER BY id
LIMIT 1
FOR SHARE
