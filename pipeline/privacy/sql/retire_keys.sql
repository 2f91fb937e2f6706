-- Sealing keys no row is sealed under any more (the caller checked): kept registered, marked retired.
UPDATE public.data_keys
SET retired_at = now()
WHERE purpose = 'seal' AND key_id <> %(current)s AND retired_at IS NULL
RETURNING key_id
