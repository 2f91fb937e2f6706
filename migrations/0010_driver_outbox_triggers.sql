-- Delivery and driver events into driver_service.outbox (payload keys: docs/events.md).
-- Each event comes from a statement on the aggregate's own row: an INSERT (nobody else can see the row
-- before commit) or an UPDATE (which holds the row lock until commit), so per aggregate `position` order
-- == commit order. Driver location updates are not in the driver payload and so emit nothing.

SET LOCAL ROLE driver_service_owner;

CREATE FUNCTION driver_service.delivery_payload(d driver_service.deliveries) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'delivery_id', d.id,
        'order_id', d.order_id,
        'driver_id', d.driver_id,
        'restaurant_id', d.restaurant_id,
        'city', d.city,
        'status', d.status,
        'pickup_lat', public.st_y(d.pickup_location::public.geometry),
        'pickup_lon', public.st_x(d.pickup_location::public.geometry),
        'dropoff_lat', public.st_y(d.dropoff_location::public.geometry),
        'dropoff_lon', public.st_x(d.dropoff_location::public.geometry),
        'distance_m', d.distance_m,
        'created_at', d.created_at,
        'promised_at', d.promised_at,
        'assigned_at', d.assigned_at,
        'picked_up_at', d.picked_up_at,
        'delivered_at', d.delivered_at,
        'updated_at', d.updated_at
    )
$$;

CREATE FUNCTION driver_service.driver_payload(d driver_service.drivers) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'driver_id', d.id,
        'city', d.city,
        'vehicle_type', d.vehicle_type,
        'status', d.status,
        'is_active', d.is_active AND d.deleted_at IS NULL,
        'updated_at', d.updated_at
    )
$$;

CREATE FUNCTION driver_service.emit_delivery_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO driver_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT 'delivery', n.id, 'DeliveryCreated', driver_service.delivery_payload(n), 1
        FROM new_deliveries n;
    ELSE
        INSERT INTO driver_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT
            'delivery',
            n.id,
            CASE
                WHEN n.status <> o.status THEN CASE n.status
                    WHEN 'assigned' THEN 'DeliveryAssigned'
                    WHEN 'picked_up' THEN 'DeliveryPickedUp'
                    WHEN 'delivered' THEN 'DeliveryCompleted'
                    WHEN 'cancelled' THEN 'DeliveryCancelled'
                    ELSE 'DeliveryUpdated'
                END
                WHEN n.driver_id IS DISTINCT FROM o.driver_id AND n.driver_id IS NOT NULL THEN 'DeliveryAssigned'
                ELSE 'DeliveryUpdated'
            END,
            driver_service.delivery_payload(n),
            1
        FROM new_deliveries n
        JOIN old_deliveries o ON o.id = n.id
        WHERE (n.order_id, n.driver_id, n.restaurant_id, n.city, n.status, n.pickup_location,
               n.dropoff_location, n.distance_m, n.created_at, n.promised_at, n.assigned_at,
               n.picked_up_at, n.delivered_at)
            IS DISTINCT FROM
              (o.order_id, o.driver_id, o.restaurant_id, o.city, o.status, o.pickup_location,
               o.dropoff_location, o.distance_m, o.created_at, o.promised_at, o.assigned_at,
               o.picked_up_at, o.delivered_at);
    END IF;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'driver_service');
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION driver_service.emit_driver_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO driver_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT 'driver', n.id, 'DriverRegistered', driver_service.driver_payload(n), 1
        FROM new_drivers n;
    ELSE
        INSERT INTO driver_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT
            'driver',
            n.id,
            CASE
                WHEN (o.is_active AND o.deleted_at IS NULL) AND NOT (n.is_active AND n.deleted_at IS NULL)
                    THEN 'DriverDeactivated'
                WHEN n.status <> o.status THEN 'DriverStatusChanged'
                ELSE 'DriverUpdated'
            END,
            driver_service.driver_payload(n),
            1
        FROM new_drivers n
        JOIN old_drivers o ON o.id = n.id
        WHERE (n.city, n.vehicle_type, n.status, n.is_active AND n.deleted_at IS NULL)
            IS DISTINCT FROM (o.city, o.vehicle_type, o.status, o.is_active AND o.deleted_at IS NULL);
    END IF;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'driver_service');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_outbox_insert AFTER INSERT ON driver_service.deliveries
    REFERENCING NEW TABLE AS new_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION driver_service.emit_delivery_events();
CREATE TRIGGER deliveries_outbox_update AFTER UPDATE ON driver_service.deliveries
    REFERENCING OLD TABLE AS old_deliveries NEW TABLE AS new_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION driver_service.emit_delivery_events();
CREATE TRIGGER drivers_outbox_insert AFTER INSERT ON driver_service.drivers
    REFERENCING NEW TABLE AS new_drivers
    FOR EACH STATEMENT EXECUTE FUNCTION driver_service.emit_driver_events();
CREATE TRIGGER drivers_outbox_update AFTER UPDATE ON driver_service.drivers
    REFERENCING OLD TABLE AS old_drivers NEW TABLE AS new_drivers
    FOR EACH STATEMENT EXECUTE FUNCTION driver_service.emit_driver_events();
