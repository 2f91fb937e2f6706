-- restaurant_service: restaurants (located, multi-cuisine), menus, menu items, operating hours.

CREATE SCHEMA IF NOT EXISTS restaurant_service AUTHORIZATION restaurant_service_owner;
SET LOCAL ROLE restaurant_service_owner;

CREATE TABLE restaurant_service.restaurants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_user_id uuid,  -- user_service.users.id; no cross-service foreign key
    name text NOT NULL,
    description text,
    cuisine_types text[] NOT NULL DEFAULT '{}',  -- the first one is the primary cuisine
    line1 text NOT NULL,
    city text NOT NULL,
    postal_code text,
    country_code char(2) NOT NULL DEFAULT 'US',
    location geography(Point, 4326) NOT NULL,
    phone text,
    rating numeric(2, 1) CHECK (rating BETWEEN 0 AND 5),
    rating_count integer NOT NULL DEFAULT 0 CHECK (rating_count >= 0),
    price_level smallint CHECK (price_level BETWEEN 1 AND 4),
    is_active boolean NOT NULL DEFAULT true,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX restaurants_location_gist ON restaurant_service.restaurants USING gist (location);
CREATE INDEX restaurants_city_idx ON restaurant_service.restaurants (city) WHERE is_active;
CREATE INDEX restaurants_cuisine_types_gin ON restaurant_service.restaurants USING gin (cuisine_types);

CREATE TABLE restaurant_service.menus (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    restaurant_id uuid NOT NULL REFERENCES restaurant_service.restaurants (id),
    name text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX menus_restaurant_id_idx ON restaurant_service.menus (restaurant_id);

CREATE TABLE restaurant_service.menu_items (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    menu_id uuid NOT NULL REFERENCES restaurant_service.menus (id),
    name text NOT NULL,
    description text,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    allergens text[] NOT NULL DEFAULT '{}',
    -- e.g. {"size": [{"name": "large", "price_delta": "2.00"}], "extras": [...]}
    customization_options jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_available boolean NOT NULL DEFAULT true,
    is_active boolean NOT NULL DEFAULT true,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX menu_items_menu_id_idx ON restaurant_service.menu_items (menu_id);

CREATE TABLE restaurant_service.operating_hours (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    restaurant_id uuid NOT NULL REFERENCES restaurant_service.restaurants (id),
    day_of_week smallint NOT NULL CHECK (day_of_week BETWEEN 0 AND 6),  -- 0 = Sunday
    opens_at time NOT NULL,
    closes_at time NOT NULL,  -- earlier than opens_at means past midnight
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (restaurant_id, day_of_week, opens_at)
);

CREATE TRIGGER restaurants_set_updated_at BEFORE UPDATE ON restaurant_service.restaurants
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER menus_set_updated_at BEFORE UPDATE ON restaurant_service.menus
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER menu_items_set_updated_at BEFORE UPDATE ON restaurant_service.menu_items
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER operating_hours_set_updated_at BEFORE UPDATE ON restaurant_service.operating_hours
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
