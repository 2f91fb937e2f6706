-- Restaurant dimension events into restaurant_service.outbox (payload keys: docs/events.md).
-- Events come from statements on the restaurant row itself (INSERT, or UPDATE holding the row lock),
-- so per restaurant `position` order == commit order.

SET LOCAL ROLE restaurant_service_owner;

CREATE FUNCTION restaurant_service.restaurant_payload(r restaurant_service.restaurants) RETURNS jsonb
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
        'updated_at', r.updated_at
    )
$$;

CREATE FUNCTION restaurant_service.emit_restaurant_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO restaurant_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT 'restaurant', n.id, 'RestaurantCreated', restaurant_service.restaurant_payload(n), 1
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
            1
        FROM new_restaurants n
        JOIN old_restaurants o ON o.id = n.id
        WHERE (n.name, n.city, n.cuisine_types, n.location, n.rating, n.is_active AND n.deleted_at IS NULL)
            IS DISTINCT FROM
              (o.name, o.city, o.cuisine_types, o.location, o.rating, o.is_active AND o.deleted_at IS NULL);
    END IF;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'restaurant_service');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER restaurants_outbox_insert AFTER INSERT ON restaurant_service.restaurants
    REFERENCING NEW TABLE AS new_restaurants
    FOR EACH STATEMENT EXECUTE FUNCTION restaurant_service.emit_restaurant_events();
CREATE TRIGGER restaurants_outbox_update AFTER UPDATE ON restaurant_service.restaurants
    REFERENCING OLD TABLE AS old_restaurants NEW TABLE AS new_restaurants
    FOR EACH STATEMENT EXECUTE FUNCTION restaurant_service.emit_restaurant_events();
