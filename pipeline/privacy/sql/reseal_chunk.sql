-- The next chunk (by id) of rows with a value not sealed under the current key, sealed again: 0023's trigger
-- decrypts each such value with the session's keys and seals it under the current one.
UPDATE {table} t
SET {assignments}
FROM (
    SELECT id FROM {table}
    WHERE id > %(after)s AND ({pending})
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE
) chunk
WHERE t.id = chunk.id
RETURNING t.id
