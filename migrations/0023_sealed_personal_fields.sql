-- Personal fields encrypted at rest (issue 22 item 2; docs/security.md §8), the key outside the database.
--
-- The sealed columns keep their names and type; they hold `enc:<key id>:<base64 of pgp_sym_encrypt>` (AES-256,
-- with pgcrypto's integrity check), written by a BEFORE row trigger per table from whatever plaintext the
-- writer sets, so no writer encrypts anything itself. The keys are the session's: each writer sets
-- `nibble.data_keys` ('lookup:<secret> k2:<secret> k1:<secret>', the first kN encrypts) with set_config and a
-- bind parameter (pipeline/privacy/sealing.py), read from a key file outside the database. Without a key, or
-- with another one than the database registered, the trigger fails the statement in one line (SQLSTATE NBK01)
-- and nothing is written.
--
-- public.data_keys registers each key by its fingerprint (an HMAC of a fixed text: it tells a wrong key from
-- the right one and reveals nothing). The first writer registers its keys; `nibble keys rotate` registers a new
-- sealing key and re-encrypts every row (`UPDATE ... SET col = col` with both keys: the trigger decrypts the old
-- ciphertext and seals it again under the new key), with `nibble.rekeying` on so that a re-encryption changes
-- no updated_at and no order's payment status.
--
-- A value that must be found by its plaintext has a keyed hash beside it (users.email_lookup: HMAC-SHA256 of
-- lower(email) with the lookup key, which rotations keep), with the unique index of live e-mails on it.
--
-- Not sealed: addresses.location (a geography, queried spatially), postal codes and cities (zones). No outbox
-- payload, Avro schema or Pinot table carries a sealed column (0009-0011, 0019, 0025), so no event changes.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE public.data_keys (
    key_id text PRIMARY KEY CHECK (key_id ~ '^(lookup|k[0-9]+)$'),
    purpose text NOT NULL CHECK ((purpose = 'lookup') = (key_id = 'lookup') AND purpose IN ('seal', 'lookup')),
    fingerprint bytea NOT NULL,
    generation integer GENERATED ALWAYS AS IDENTITY,  -- the newest sealing key is the current one
    registered_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz  -- set by a rotation once no row is sealed under it
);

-- The secret of `key_id` from this session's nibble.data_keys, checked against the database's registration.
-- SECURITY DEFINER (as current_data_key): the writers check their keys against the registrations without
-- reading or changing public.data_keys themselves.
CREATE FUNCTION public.data_key_secret(key_id text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ring text := current_setting('nibble.data_keys', true);
    secret text;
    registered bytea;
BEGIN
    IF coalesce(ring, '') = '' THEN
        RAISE EXCEPTION 'no data key in this session: nothing written (set NIBBLE_DATA_KEY_FILE, docs/security.md §8)'
            USING ERRCODE = 'NBK01';
    END IF;
    secret := substring(' ' || ring || ' ' FROM ' ' || key_id || ':([A-Za-z0-9_-]+) ');
    IF secret IS NULL THEN
        RAISE EXCEPTION 'data key % is not in this session''s key file: nothing written', key_id USING ERRCODE = 'NBK01';
    END IF;
    SELECT k.fingerprint INTO registered FROM public.data_keys k WHERE k.key_id = data_key_secret.key_id;
    IF registered IS NULL THEN
        RAISE EXCEPTION 'data key % is not registered in this database: nothing written', key_id
            USING ERRCODE = 'NBK01';
    END IF;
    IF registered <> public.hmac('nibble data key', secret, 'sha256') THEN
        RAISE EXCEPTION 'data key % is not the one this database registered (a wrong key file?): nothing written',
            key_id USING ERRCODE = 'NBK01';
    END IF;
    RETURN secret;
END
$$;

-- The first use of a database registers the session's lookup key and current sealing key (two first writers:
-- one registers, the other then finds them).
CREATE FUNCTION public.register_first_data_keys() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ring text := ' ' || coalesce(current_setting('nibble.data_keys', true), '') || ' ';
BEGIN
    LOCK TABLE public.data_keys IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT FROM public.data_keys WHERE purpose = 'seal') THEN
        INSERT INTO public.data_keys (key_id, purpose, fingerprint)
        SELECT id, CASE WHEN id = 'lookup' THEN 'lookup' ELSE 'seal' END,
               public.hmac('nibble data key', substring(ring FROM ' ' || id || ':([A-Za-z0-9_-]+) '), 'sha256')
        FROM unnest(ARRAY['lookup', substring(ring FROM ' (k[0-9]+):')]) AS id
        WHERE substring(ring FROM ' ' || id || ':([A-Za-z0-9_-]+) ') IS NOT NULL
        ON CONFLICT (key_id) DO NOTHING;
    END IF;
END
$$;

-- The session's current sealing key (its first kN), which must be the database's newest.
CREATE FUNCTION public.current_data_key() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ring text := coalesce(current_setting('nibble.data_keys', true), '');
    mine text := substring(' ' || ring FROM ' (k[0-9]+):');
    newest text;
BEGIN
    IF ring = '' OR mine IS NULL THEN
        RAISE EXCEPTION 'no data key in this session: nothing written (set NIBBLE_DATA_KEY_FILE, docs/security.md §8)'
            USING ERRCODE = 'NBK01';
    END IF;
    SELECT k.key_id INTO newest FROM public.data_keys k WHERE k.purpose = 'seal' ORDER BY k.generation DESC LIMIT 1;
    IF newest IS NULL THEN
        PERFORM public.register_first_data_keys();
        SELECT k.key_id INTO newest FROM public.data_keys k WHERE k.purpose = 'seal' ORDER BY k.generation DESC LIMIT 1;
    END IF;
    IF mine <> newest THEN
        RAISE EXCEPTION 'data key % is not this database''s current key %: nothing written (use the newest key file)',
            mine, newest USING ERRCODE = 'NBK01';
    END IF;
    PERFORM public.data_key_secret(mine);
    RETURN mine;
END
$$;

-- Whether this session may write sealed fields: the check `nibble` runs before its first write.
CREATE FUNCTION public.check_data_keys() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.current_data_key();
    PERFORM public.data_key_secret('lookup');
END
$$;

-- A sealed value's plaintext with the session's keys (a value written before 0023 is still plaintext, until
-- `nibble keys rotate` seals it).
CREATE FUNCTION public.unseal(value text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF value IS NULL OR value NOT LIKE 'enc:%' THEN
        RETURN value;
    END IF;
    RETURN public.pgp_sym_decrypt(decode(split_part(value, ':', 3), 'base64'),
                                  public.data_key_secret(split_part(value, ':', 2)));
END
$$;

-- The keyed hash a value is looked up by (`WHERE email_lookup = public.lookup_hash($1)`).
CREATE FUNCTION public.lookup_hash(value text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(public.hmac(lower(value), public.data_key_secret('lookup'), 'sha256'), 'hex')
$$;

-- The row trigger: each argument names a sealed column, `column:lookup_column` also keeps its keyed hash.
-- A column left as it was and already under the current key is not touched (an UPDATE of another column).
CREATE FUNCTION public.seal_personal_fields() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key_id text := public.current_data_key();
    secret text := public.data_key_secret(key_id);
    fields jsonb := to_jsonb(NEW);
    previous jsonb := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END;
    changes jsonb := '{}';
    spec text;
    value text;
    plain text;
BEGIN
    FOREACH spec IN ARRAY TG_ARGV LOOP
        value := fields ->> split_part(spec, ':', 1);
        CONTINUE WHEN value IS NULL OR (value LIKE 'enc:' || key_id || ':%' AND value = previous ->> split_part(spec, ':', 1));
        plain := public.unseal(value);
        changes := changes || jsonb_build_object(split_part(spec, ':', 1), 'enc:' || key_id || ':' || translate(
            encode(public.pgp_sym_encrypt(plain, secret, 'cipher-algo=aes256, s2k-mode=1'), 'base64'), E'\n', ''));
        IF split_part(spec, ':', 2) <> '' THEN
            changes := changes || jsonb_build_object(split_part(spec, ':', 2), public.lookup_hash(plain));
        END IF;
    END LOOP;
    RETURN jsonb_populate_record(NEW, changes);
END
$$;

ALTER TABLE user_service.users ADD COLUMN email_lookup text;
DROP INDEX user_service.users_email_live_key;  -- lower(email) of a ciphertext is meaningless
CREATE UNIQUE INDEX users_email_lookup_live_key ON user_service.users (email_lookup) WHERE deleted_at IS NULL;

CREATE TRIGGER users_seal BEFORE INSERT OR UPDATE OF email, phone, full_name ON user_service.users
    FOR EACH ROW EXECUTE FUNCTION public.seal_personal_fields('email:email_lookup', 'phone', 'full_name');
CREATE TRIGGER addresses_seal BEFORE INSERT OR UPDATE OF line1, line2 ON user_service.addresses
    FOR EACH ROW EXECUTE FUNCTION public.seal_personal_fields('line1', 'line2');
CREATE TRIGGER drivers_seal BEFORE INSERT OR UPDATE OF full_name, phone, license_plate ON driver_service.drivers
    FOR EACH ROW EXECUTE FUNCTION public.seal_personal_fields('full_name', 'phone', 'license_plate');
-- Rows without a phone or a reference need no key (the checkout path writes payments without one).
CREATE TRIGGER restaurants_seal BEFORE INSERT OR UPDATE OF phone ON restaurant_service.restaurants
    FOR EACH ROW WHEN (NEW.phone IS NOT NULL) EXECUTE FUNCTION public.seal_personal_fields('phone');
CREATE TRIGGER payments_seal BEFORE INSERT OR UPDATE OF provider_reference ON order_service.payments
    FOR EACH ROW WHEN (NEW.provider_reference IS NOT NULL)
    EXECUTE FUNCTION public.seal_personal_fields('provider_reference');

-- A re-encryption is not a change of the row: updated_at stays (drivers' is in their events' payload).
DROP TRIGGER users_set_updated_at ON user_service.users;
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON user_service.users FOR EACH ROW
    WHEN (current_setting('nibble.rekeying', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION public.set_updated_at();
DROP TRIGGER addresses_set_updated_at ON user_service.addresses;
CREATE TRIGGER addresses_set_updated_at BEFORE UPDATE ON user_service.addresses FOR EACH ROW
    WHEN (current_setting('nibble.rekeying', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION public.set_updated_at();
DROP TRIGGER drivers_set_updated_at ON driver_service.drivers;
CREATE TRIGGER drivers_set_updated_at BEFORE UPDATE ON driver_service.drivers FOR EACH ROW
    WHEN (current_setting('nibble.rekeying', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION public.set_updated_at();
DROP TRIGGER restaurants_set_updated_at ON restaurant_service.restaurants;
CREATE TRIGGER restaurants_set_updated_at BEFORE UPDATE ON restaurant_service.restaurants FOR EACH ROW
    WHEN (current_setting('nibble.rekeying', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION public.set_updated_at();
DROP TRIGGER payments_set_updated_at ON order_service.payments;
CREATE TRIGGER payments_set_updated_at BEFORE UPDATE ON order_service.payments FOR EACH ROW
    WHEN (current_setting('nibble.rekeying', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION public.set_updated_at();

-- 0005's rule takes an order's payment status from the payments a statement wrote: a re-encrypted older
-- payment (a failed one before the captured one) would otherwise become the order's status.
CREATE OR REPLACE FUNCTION order_service.apply_payment_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('nibble.rekeying', true) = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE order_service.orders o
    SET payment_status = p.status
    FROM (
        SELECT DISTINCT ON (order_id) order_id, status
        FROM new_payments
        ORDER BY order_id, updated_at DESC, created_at DESC
    ) p
    WHERE o.id = p.order_id AND o.payment_status IS DISTINCT FROM p.status;
    RETURN NULL;
END
$$;

-- No login reads or changes the registrations: only the functions above, a database's first use and
-- `nibble keys rotate` (as the superuser, like `nibble migrate`).
REVOKE ALL ON public.data_keys FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.register_first_data_keys() FROM PUBLIC;

-- A statement log never shows the keys: set_config's bind parameter is logged with log_statement or
-- log_min_duration_statement unless log_parameter_max_length is 0 (per database, as 0021 sets nibble_verify's).
DO $$
DECLARE
    login text;
BEGIN
    FOREACH login IN ARRAY ARRAY['user_service', 'restaurant_service', 'order_service', 'driver_service'] LOOP
        EXECUTE format('ALTER ROLE %I IN DATABASE %I SET log_parameter_max_length = 0', login, current_database());
    END LOOP;
END
$$;
