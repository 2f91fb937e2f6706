-- Order event semantics once items can be removed (issue 9; the table is in docs/events.md).
--
-- 0009 read "item_count went 0 -> >0" as "the order is placed" and "item_count > 0" as "analytics sees the
-- order". Both break when items are removed: an order refilled after being emptied wrote OrderPlaced again,
-- and an emptied order wrote nothing more, its cancellation included. Now an order is visible to analytics
-- from the statement in which it first has items, for good, and that statement alone writes OrderPlaced.
-- orders.announced remembers it across a drop to 0 items. Orders that had items before this migration keep
-- announced = false until their next update, so "visible" is `announced OR item_count > 0` everywhere:
-- no backfill, no rewrite of the orders table.
--
-- Analytics cannot forget or re-key an aggregate (Pinot's upsert tables have no deletes), so deleting, or
-- changing the id of, an order that was visible, a delivery, a driver or a restaurant is refused with a
-- one-line error instead of leaving Pinot silently out of date. Each of those triggers is row-level and
-- fires only on a DELETE or on an UPDATE that sets `id`: nothing is added to the hot path.

CREATE FUNCTION public.refuse_unpublishable_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.%: % of % % refused: it is published to analytics, which cannot forget or re-key it',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, TG_ARGV[0], OLD.id
        USING ERRCODE = 'restrict_violation', HINT = TG_ARGV[1];
END
$$;

SET LOCAL ROLE order_service_owner;

ALTER TABLE order_service.orders ADD COLUMN announced boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN order_service.orders.announced IS
    'OrderPlaced has been written (trigger-maintained; writes to it are ignored). Visible to analytics: '
    'announced OR item_count > 0 (rows not updated since migration 0012 may have items and false).';

-- Fires once per order, in the statement that first gives it items: the WHEN clause is false for every
-- other row, so the common UPDATE pays one expression, not a function call.
CREATE FUNCTION order_service.set_announced() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.announced := OLD.announced OR OLD.item_count > 0 OR NEW.item_count > 0;
    RETURN NEW;
END
$$;

CREATE TRIGGER orders_announced BEFORE UPDATE ON order_service.orders
    FOR EACH ROW
    WHEN (NEW.announced IS DISTINCT FROM (OLD.announced OR OLD.item_count > 0 OR NEW.item_count > 0))
    EXECUTE FUNCTION order_service.set_announced();

CREATE OR REPLACE FUNCTION order_service.emit_order_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT
        'order',
        n.id,
        CASE
            WHEN NOT (o.announced OR o.item_count > 0) THEN 'OrderPlaced'
            WHEN n.status = 'cancelled' AND o.status <> 'cancelled' THEN 'OrderCancelled'
            WHEN n.status <> o.status THEN 'OrderStatusChanged'
            WHEN n.payment_status IS DISTINCT FROM o.payment_status AND n.payment_status = 'captured'
                THEN 'PaymentCaptured'
            WHEN n.payment_status IS DISTINCT FROM o.payment_status AND n.payment_status = 'refunded'
                THEN 'PaymentRefunded'
            ELSE 'OrderUpdated'
        END,
        order_service.order_payload(n),
        1
    FROM new_orders n
    JOIN old_orders o ON o.id = n.id
    -- n.announced: visible now (orders_announced has set it from the old row and the new item_count)
    WHERE n.announced
        -- the payload's columns; updated_at alone is not a change
        AND (n.user_id, n.restaurant_id, n.restaurant_name, n.city, n.cuisine, n.status, n.item_count,
             n.subtotal, n.delivery_fee, n.tip, n.currency, n.payment_status, n.cancel_reason,
             n.delivery_location, n.placed_at, n.promised_at)
        IS DISTINCT FROM
            (o.user_id, o.restaurant_id, o.restaurant_name, o.city, o.cuisine, o.status, o.item_count,
             o.subtotal, o.delivery_fee, o.tip, o.currency, o.payment_status, o.cancel_reason,
             o.delivery_location, o.placed_at, o.promised_at);
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'order_service');
    END IF;
    RETURN NULL;
END
$$;

-- The order service inserts an order with no items (totals are derived from order_items), so this fires
-- for none of its rows; a row inserted already visible is placed by its INSERT.
CREATE FUNCTION order_service.emit_order_placed_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    VALUES ('order', NEW.id, 'OrderPlaced', order_service.order_payload(NEW), 1);
    PERFORM pg_notify('nibble_outbox', 'order_service');  -- repeats within a transaction are folded into one
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_outbox_insert AFTER INSERT ON order_service.orders
    FOR EACH ROW WHEN (NEW.announced OR NEW.item_count > 0)
    EXECUTE FUNCTION order_service.emit_order_placed_on_insert();

CREATE TRIGGER orders_refuse_delete BEFORE DELETE ON order_service.orders
    FOR EACH ROW WHEN (OLD.announced OR OLD.item_count > 0)
    EXECUTE FUNCTION public.refuse_unpublishable_change('order', 'cancel the order instead');
CREATE TRIGGER orders_refuse_new_id BEFORE UPDATE OF id ON order_service.orders
    FOR EACH ROW WHEN (OLD.id <> NEW.id AND (OLD.announced OR OLD.item_count > 0))
    EXECUTE FUNCTION public.refuse_unpublishable_change('order', 'an order keeps its id');

SET LOCAL ROLE driver_service_owner;

CREATE TRIGGER deliveries_refuse_delete BEFORE DELETE ON driver_service.deliveries
    FOR EACH ROW EXECUTE FUNCTION public.refuse_unpublishable_change('delivery', 'cancel the delivery instead');
CREATE TRIGGER deliveries_refuse_new_id BEFORE UPDATE OF id ON driver_service.deliveries
    FOR EACH ROW WHEN (OLD.id <> NEW.id)
    EXECUTE FUNCTION public.refuse_unpublishable_change('delivery', 'a delivery keeps its id');
CREATE TRIGGER drivers_refuse_delete BEFORE DELETE ON driver_service.drivers
    FOR EACH ROW EXECUTE FUNCTION public.refuse_unpublishable_change('driver', 'set deleted_at instead');
CREATE TRIGGER drivers_refuse_new_id BEFORE UPDATE OF id ON driver_service.drivers
    FOR EACH ROW WHEN (OLD.id <> NEW.id)
    EXECUTE FUNCTION public.refuse_unpublishable_change('driver', 'a driver keeps its id');

SET LOCAL ROLE restaurant_service_owner;

CREATE TRIGGER restaurants_refuse_delete BEFORE DELETE ON restaurant_service.restaurants
    FOR EACH ROW EXECUTE FUNCTION public.refuse_unpublishable_change('restaurant', 'set deleted_at instead');
CREATE TRIGGER restaurants_refuse_new_id BEFORE UPDATE OF id ON restaurant_service.restaurants
    FOR EACH ROW WHEN (OLD.id <> NEW.id)
    EXECUTE FUNCTION public.refuse_unpublishable_change('restaurant', 'a restaurant keeps its id');
