-- Schema evolution, the worked example (docs/events.md, "Evolving a schema"): restaurants gain
-- prep_time_minutes, and every restaurant event from now on is RestaurantEvent v2
-- (avro_schemas/restaurants/v2.avsc), which carries it. v1 events already in the outbox stay v1: the relay
-- writes each row with the version it names, and v2 reads v1 (the field's default is null).
-- Deploy `nibble schemas apply` and relays that know v2 before this migration (a relay without v2.avsc
-- dead-letters a v2 row).

SET LOCAL ROLE restaurant_service_owner;

-- Nullable, no default: the restaurants that exist are unknown (null), as their v1 events say in Pinot.
ALTER TABLE restaurant_service.restaurants
    ADD COLUMN prep_time_minutes smallint CHECK (prep_time_minutes BETWEEN 1 AND 240);

CREATE OR REPLACE FUNCTION restaurant_service.restaurant_payload(r restaurant_service.restaurants) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'restaurant_id', r.id,
        'name', r.name,
        'city', r.city,
        'cuisines', to_jsonb(r.cuisine_types),
        'lat', public.st_y(r.location::public.geometry),
        'lon', public.st_x(r.location::public.geometry),
        'rating', r.rating::double precision,
        'is_active', r.is_active AND r.deleted_at IS NULL,
        'updated_at', r.updated_at,
        'prep_time_minutes', r.prep_time_minutes
    )
$$;

-- As 0011, with schema_version 2 and a change of prep_time_minutes publishing a RestaurantUpdated.
CREATE OR REPLACE FUNCTION restaurant_service.emit_restaurant_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO restaurant_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT 'restaurant', n.id, 'RestaurantCreated', restaurant_service.restaurant_payload(n), 2
        FROM new_restaurants n;
    ELSE
        INSERT INTO restaurant_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT
            'restaurant',
            n.id,
            CASE
                WHEN (o.is_active AND o.deleted_at IS NULL) AND NOT (n.is_active AND n.deleted_at IS NULL)
                    THEN 'RestaurantDeactivated'
                ELSE 'RestaurantUpdated'
            END,
            restaurant_service.restaurant_payload(n),
            2
        FROM new_restaurants n
        JOIN old_restaurants o ON o.id = n.id
        WHERE (n.name, n.city, n.cuisine_types, n.location, n.rating, n.is_active AND n.deleted_at IS NULL,
               n.prep_time_minutes)
            IS DISTINCT FROM
              (o.name, o.city, o.cuisine_types, o.location, o.rating, o.is_active AND o.deleted_at IS NULL,
               o.prep_time_minutes);
    END IF;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'restaurant_service');
    END IF;
    RETURN NULL;
END
$$;

-- As 0014, with schema_version 2; SECURITY DEFINER and its search_path as 0021 set them (CREATE OR REPLACE
-- resets what it does not name; the grants stay).
CREATE OR REPLACE FUNCTION restaurant_service.emit_restaurant_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    emitted integer;
BEGIN
    INSERT INTO restaurant_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'restaurant', r.id, 'RestaurantSnapshot', restaurant_service.restaurant_payload(r), 2
    FROM restaurant_service.restaurants r
    WHERE r.id = ANY (ids)
    ORDER BY r.id
    FOR SHARE;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'restaurant_service');
    END IF;
    RETURN emitted;
END
$$;
