-- The next chunk of `nibble backfill`: rows after the last one done, by primary key, locked FOR SHARE so no
-- writer changes them before their snapshot is written. A row a writer holds is skipped, never waited for:
-- holding this chunk's locks while waiting could deadlock with that writer. The caller keeps the rows
-- before the first skipped one.
SELECT id
FROM {table}
WHERE id > %(after)s
  AND updated_at >= %(since)s
ORDER BY id
LIMIT %(batch)s
FOR SHARE SKIP LOCKED
