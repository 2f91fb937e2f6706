-- Extensions every service schema relies on, and the cluster-wide roles.
-- Roles are shared by every database in the cluster (tests migrate many fresh databases), so each is
-- created only if missing, tolerating a concurrent migration of another database creating it first.

CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";  -- the seed's support-ticket tables use uuid_generate_v4()

DO $$
DECLARE
    owner_role text;
BEGIN
    FOREACH owner_role IN ARRAY ARRAY[
        'user_service_owner', 'restaurant_service_owner', 'order_service_owner',
        'driver_service_owner', 'admin_service_owner'
    ] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = owner_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', owner_role);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'nibble_relay') THEN
        BEGIN
            -- The password only matters where auth is not trust (docker); an existing role keeps its own.
            CREATE ROLE nibble_relay LOGIN PASSWORD 'nibble_relay';
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

-- PostgreSQL < 15 lets every role create objects in public; no role of ours should.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
