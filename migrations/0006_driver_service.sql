-- driver_service: drivers, deliveries (pickup and drop-off points copied from the order and the
-- restaurant when the delivery is created), and the drivers' location pings.

CREATE SCHEMA IF NOT EXISTS driver_service AUTHORIZATION driver_service_owner;
SET LOCAL ROLE driver_service_owner;

CREATE TABLE driver_service.drivers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,  -- user_service.users.id
    full_name text NOT NULL,
    phone text,
    city text NOT NULL,
    vehicle_type text NOT NULL CHECK (vehicle_type IN ('bicycle', 'scooter', 'motorcycle', 'car')),
    license_plate text,
    status text NOT NULL DEFAULT 'offline' CHECK (status IN ('offline', 'available', 'busy')),
    current_location geography(Point, 4326),
    location_updated_at timestamptz,
    is_active boolean NOT NULL DEFAULT true,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX drivers_user_id_key ON driver_service.drivers (user_id) WHERE deleted_at IS NULL;
CREATE INDEX drivers_current_location_gist ON driver_service.drivers USING gist (current_location)
    WHERE is_active;

CREATE TABLE driver_service.deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id uuid NOT NULL UNIQUE,  -- order_service.orders.id
    driver_id uuid REFERENCES driver_service.drivers (id),
    restaurant_id uuid NOT NULL,    -- restaurant_service.restaurants.id
    city text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'assigned', 'picked_up', 'delivered', 'cancelled'
    )),
    pickup_location geography(Point, 4326) NOT NULL,
    dropoff_location geography(Point, 4326) NOT NULL,
    distance_m double precision CHECK (distance_m >= 0),  -- the route actually driven, once known
    promised_at timestamptz NOT NULL,
    assigned_at timestamptz,
    picked_up_at timestamptz,
    delivered_at timestamptz,
    cancelled_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_driver_when_assigned CHECK (
        driver_id IS NOT NULL OR status IN ('pending', 'cancelled')
    )
);
CREATE INDEX deliveries_driver_id_idx ON driver_service.deliveries (driver_id);
CREATE INDEX deliveries_pickup_location_gist ON driver_service.deliveries USING gist (pickup_location);
CREATE INDEX deliveries_dropoff_location_gist ON driver_service.deliveries USING gist (dropoff_location);

-- Append-only and high volume: no updated_at, no soft delete (old pings are purged by age).
CREATE TABLE driver_service.driver_location_pings (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    driver_id uuid NOT NULL REFERENCES driver_service.drivers (id),
    delivery_id uuid REFERENCES driver_service.deliveries (id),
    location geography(Point, 4326) NOT NULL,
    speed_mps real,
    heading_deg real CHECK (heading_deg >= 0 AND heading_deg < 360),
    accuracy_m real,
    recorded_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX driver_location_pings_driver_time_idx
    ON driver_service.driver_location_pings (driver_id, recorded_at);
CREATE INDEX driver_location_pings_location_gist
    ON driver_service.driver_location_pings USING gist (location);

CREATE TRIGGER drivers_set_updated_at BEFORE UPDATE ON driver_service.drivers
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER deliveries_set_updated_at BEFORE UPDATE ON driver_service.deliveries
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
