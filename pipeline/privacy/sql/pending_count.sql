-- Rows with a value not sealed under the current key (`sealed`: its ciphertexts' prefix pattern).
SELECT count(*) FROM {table} WHERE {pending}
