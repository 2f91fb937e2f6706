-- user_service: accounts, profiles with dietary preferences, delivery addresses.

CREATE SCHEMA IF NOT EXISTS user_service AUTHORIZATION user_service_owner;
SET LOCAL ROLE user_service_owner;

CREATE TABLE user_service.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL,
    phone text,
    full_name text NOT NULL,
    -- e.g. {"vegetarian": true, "allergies": ["peanuts"], "spice_level": "medium"}
    dietary_preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active boolean NOT NULL DEFAULT true,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_dietary_preferences_is_object CHECK (jsonb_typeof(dietary_preferences) = 'object')
);
-- A soft-deleted account frees its e-mail address for a new sign-up.
CREATE UNIQUE INDEX users_email_live_key ON user_service.users (lower(email)) WHERE deleted_at IS NULL;

CREATE TABLE user_service.addresses (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES user_service.users (id),
    label text,
    line1 text NOT NULL,
    line2 text,
    city text NOT NULL,
    postal_code text,
    country_code char(2) NOT NULL DEFAULT 'US',
    location geography(Point, 4326) NOT NULL,
    is_default boolean NOT NULL DEFAULT false,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX addresses_user_id_idx ON user_service.addresses (user_id);
CREATE INDEX addresses_location_gist ON user_service.addresses USING gist (location);
CREATE UNIQUE INDEX addresses_one_default_per_user ON user_service.addresses (user_id)
    WHERE is_default AND deleted_at IS NULL;

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON user_service.users
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER addresses_set_updated_at BEFORE UPDATE ON user_service.addresses
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
