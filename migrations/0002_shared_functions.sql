-- The one trigger function every service schema shares: keep updated_at current on UPDATE.
-- It lives in public next to the extensions; it reads nothing but the row being written.

CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
