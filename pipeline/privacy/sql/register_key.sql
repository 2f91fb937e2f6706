-- A rotation's new sealing key, which becomes the database's current one (a rerun finds it registered).
INSERT INTO public.data_keys (key_id, purpose, fingerprint)
VALUES (%(key_id)s, 'seal', public.hmac('nibble data key', %(secret)s, 'sha256'))
ON CONFLICT (key_id) DO NOTHING
