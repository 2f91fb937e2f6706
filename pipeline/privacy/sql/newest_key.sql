-- The database's current sealing key (the newest registered), and every sealing key registered.
SELECT key_id, key_id = first_value(key_id) OVER (ORDER BY generation DESC) AS current
FROM public.data_keys
WHERE purpose = 'seal'
ORDER BY generation DESC
