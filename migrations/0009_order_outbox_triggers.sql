-- Order events into order_service.outbox (payload keys: docs/events.md, "orders").
--
-- Every order event is written by the statement-level trigger on UPDATE of orders, because every change
-- analytics sees reaches the order row: item changes roll into item_count/subtotal and payments into
-- payment_status (0005). So the UPDATE that fires the trigger already holds the row lock of each order it
-- emits for: a second writer of the same order waits for the first to commit before it can insert its
-- outbox row, hence per order `position` order == commit order.
--
-- OrderPlaced: an order becomes visible to analytics when it first has items (item_count 0 -> > 0),
-- normally the order_items INSERT right after the order's own INSERT, so the OrderPlaced payload carries
-- the real item_count and totals. Inserting the order row alone emits nothing, and neither does any
-- change to an order without items.

SET LOCAL ROLE order_service_owner;

CREATE FUNCTION order_service.order_payload(o order_service.orders) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'order_id', o.id,
        'user_id', o.user_id,
        'restaurant_id', o.restaurant_id,
        'restaurant_name', o.restaurant_name,
        'city', o.city,
        'cuisine', o.cuisine,
        'status', o.status,
        'item_count', o.item_count,
        'subtotal_cents', (o.subtotal * 100)::bigint,
        'delivery_fee_cents', (o.delivery_fee * 100)::bigint,
        'tip_cents', (o.tip * 100)::bigint,
        'total_cents', (o.total * 100)::bigint,
        'currency', o.currency,
        'payment_status', o.payment_status,
        'cancel_reason', o.cancel_reason,
        'delivery_lat', public.st_y(o.delivery_location::public.geometry),
        'delivery_lon', public.st_x(o.delivery_location::public.geometry),
        'placed_at', o.placed_at,
        'promised_at', o.promised_at,
        'updated_at', o.updated_at
    )
$$;

CREATE FUNCTION order_service.emit_order_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT
        'order',
        n.id,
        CASE
            WHEN o.item_count = 0 THEN 'OrderPlaced'
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
    WHERE (n.item_count > 0 OR o.item_count > 0)
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

CREATE TRIGGER orders_outbox AFTER UPDATE ON order_service.orders
    REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.emit_order_events();
