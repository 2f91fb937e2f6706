-- Backfill (`nibble backfill`, docs/operations.md): one snapshot event per existing business row, written
-- into the outboxes in chunks by primary key, with its progress kept here so a killed run resumes.
--
-- A snapshot event carries the same payload the triggers write (the payload functions of 0009-0011 are
-- called by name, not copied, so a later migration that replaces one changes both) under its own event
-- type (`OrderSnapshot`, `DeliverySnapshot`, `RestaurantSnapshot`, `DriverSnapshot`), so history tables
-- can tell it from a real change.
--
-- Never older than PostgreSQL. Pinot's upsert tables keep, per aggregate, the event with the highest
-- `outbox_position`, and a position is drawn when the outbox row is inserted, not when it commits. Every
-- trigger inserts its event while its statement holds the aggregate row's lock (an UPDATE) or while the row
-- is invisible to others (an INSERT). The snapshot functions below read the row and insert its event while
-- holding a FOR SHARE lock on it, which conflicts with every UPDATE's row lock. So a writer and a snapshot of
-- one row run one after the other: if the writer's UPDATE came first, FOR SHARE waits for its commit and
-- then reads the row as that writer left it (READ COMMITTED re-reads the newest version of a row it waited
-- for), and the snapshot's position is drawn after the writer's; if the snapshot came first, the writer's
-- UPDATE waits for the snapshot's commit and draws a later position. Either way the highest position
-- carries the newest state.

CREATE TABLE public.backfill_progress (
    table_name text PRIMARY KEY CHECK (table_name IN ('orders', 'deliveries', 'restaurants', 'drivers')),
    since timestamptz,                     -- only rows updated at or after it; NULL: every row
    last_id uuid,                          -- the highest primary key done; NULL: none yet
    rows_done bigint NOT NULL DEFAULT 0,   -- rows covered (an order without items is covered, not emitted)
    events bigint NOT NULL DEFAULT 0,      -- snapshot events written
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

SET LOCAL ROLE order_service_owner;

-- An order is visible to analytics from its first items on (0012: `announced OR item_count > 0`); one that
-- never had items gets no snapshot either.
CREATE FUNCTION order_service.emit_order_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer;
BEGIN
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'order', o.id, 'OrderSnapshot', order_service.order_payload(o), 1
    FROM order_service.orders o
    WHERE o.id = ANY (ids) AND (o.announced OR o.item_count > 0)
    ORDER BY o.id
    FOR SHARE;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'order_service');
    END IF;
    RETURN emitted;
END
$$;

SET LOCAL ROLE driver_service_owner;

CREATE FUNCTION driver_service.emit_delivery_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer;
BEGIN
    INSERT INTO driver_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'delivery', d.id, 'DeliverySnapshot', driver_service.delivery_payload(d), 1
    FROM driver_service.deliveries d
    WHERE d.id = ANY (ids)
    ORDER BY d.id
    FOR SHARE;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'driver_service');
    END IF;
    RETURN emitted;
END
$$;

CREATE FUNCTION driver_service.emit_driver_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer;
BEGIN
    INSERT INTO driver_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'driver', d.id, 'DriverSnapshot', driver_service.driver_payload(d), 1
    FROM driver_service.drivers d
    WHERE d.id = ANY (ids)
    ORDER BY d.id
    FOR SHARE;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'driver_service');
    END IF;
    RETURN emitted;
END
$$;

SET LOCAL ROLE restaurant_service_owner;

CREATE FUNCTION restaurant_service.emit_restaurant_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer;
BEGIN
    INSERT INTO restaurant_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'restaurant', r.id, 'RestaurantSnapshot', restaurant_service.restaurant_payload(r), 1
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
