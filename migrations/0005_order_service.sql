-- order_service: orders (with a snapshot of the restaurant and the drop-off point, since the order
-- service never reads another schema), order items, payments, and the order status history.
-- orders.item_count / subtotal / payment_status are derived: the order_items and payments triggers below
-- keep them current, so an order is inserted with the defaults and never has them written directly.

CREATE SCHEMA IF NOT EXISTS order_service AUTHORIZATION order_service_owner;
SET LOCAL ROLE order_service_owner;

CREATE TABLE order_service.orders (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,        -- user_service.users.id
    restaurant_id uuid NOT NULL,  -- restaurant_service.restaurants.id
    restaurant_name text NOT NULL,
    city text NOT NULL,
    cuisine text NOT NULL,        -- the restaurant's primary cuisine when the order was placed
    status text NOT NULL DEFAULT 'placed' CHECK (status IN (
        'placed', 'confirmed', 'preparing', 'ready_for_pickup', 'picked_up', 'delivered', 'cancelled'
    )),
    item_count integer NOT NULL DEFAULT 0 CHECK (item_count >= 0),
    subtotal numeric(12, 2) NOT NULL DEFAULT 0 CHECK (subtotal >= 0),
    delivery_fee numeric(12, 2) NOT NULL DEFAULT 0 CHECK (delivery_fee >= 0),
    tip numeric(12, 2) NOT NULL DEFAULT 0 CHECK (tip >= 0),
    total numeric(12, 2) GENERATED ALWAYS AS (subtotal + delivery_fee + tip) STORED,
    currency char(3) NOT NULL DEFAULT 'USD',
    payment_status text CHECK (payment_status IN ('authorized', 'captured', 'refunded', 'failed')),
    cancel_reason text,
    delivery_address_id uuid,     -- user_service.addresses.id
    delivery_location geography(Point, 4326) NOT NULL,
    special_instructions text,
    placed_at timestamptz NOT NULL DEFAULT now(),
    promised_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_cancel_reason_only_when_cancelled CHECK (cancel_reason IS NULL OR status = 'cancelled')
);
CREATE INDEX orders_user_id_idx ON order_service.orders (user_id);
CREATE INDEX orders_restaurant_id_idx ON order_service.orders (restaurant_id);
CREATE INDEX orders_placed_at_idx ON order_service.orders (placed_at);
CREATE INDEX orders_delivery_location_gist ON order_service.orders USING gist (delivery_location);

CREATE TABLE order_service.order_items (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id uuid NOT NULL REFERENCES order_service.orders (id),
    menu_item_id uuid NOT NULL,   -- restaurant_service.menu_items.id
    name text NOT NULL,           -- the menu item's name when ordered
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL CHECK (unit_price >= 0),  -- including chosen options
    line_total numeric(12, 2) GENERATED ALWAYS AS (quantity * unit_price) STORED,
    -- the options chosen, e.g. {"size": "large", "extras": ["cheese"]}
    customizations jsonb NOT NULL DEFAULT '{}'::jsonb,
    special_instructions text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_items_order_id_idx ON order_service.order_items (order_id);

CREATE TABLE order_service.payments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id uuid NOT NULL REFERENCES order_service.orders (id),
    amount numeric(12, 2) NOT NULL CHECK (amount >= 0),
    currency char(3) NOT NULL DEFAULT 'USD',
    method text NOT NULL CHECK (method IN ('card', 'wallet', 'cash')),
    status text NOT NULL CHECK (status IN ('authorized', 'captured', 'refunded', 'failed')),
    provider_reference text,
    captured_at timestamptz,
    refunded_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order_id_idx ON order_service.payments (order_id);

-- Audit trail: one row per status an order enters, written by trigger.
CREATE TABLE order_service.order_status_history (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id uuid NOT NULL REFERENCES order_service.orders (id),
    from_status text,
    to_status text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),  -- orders changes inside one transaction
    changed_by name NOT NULL DEFAULT current_user
);
CREATE INDEX order_status_history_order_id_idx ON order_service.order_status_history (order_id, changed_at);

CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON order_service.orders
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER order_items_set_updated_at BEFORE UPDATE ON order_service.order_items
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER payments_set_updated_at BEFORE UPDATE ON order_service.payments
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

CREATE FUNCTION order_service.record_status_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO order_service.order_status_history (order_id, from_status, to_status)
        SELECT n.id, NULL, n.status FROM new_orders n;
    ELSE
        INSERT INTO order_service.order_status_history (order_id, from_status, to_status)
        SELECT n.id, o.status, n.status
        FROM new_orders n JOIN old_orders o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_status_history_insert AFTER INSERT ON order_service.orders
    REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.record_status_history();
CREATE TRIGGER orders_status_history_update AFTER UPDATE ON order_service.orders
    REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.record_status_history();

-- Roll item changes into the order's item_count and subtotal. Adding a delta (rather than recounting)
-- stays right when two transactions add items to one order at once: the second UPDATE waits for the
-- first's row lock and then re-applies its delta to the committed row. That UPDATE also takes the order
-- row lock, which is what serializes every writer of one order (see 0009's outbox triggers).
CREATE FUNCTION order_service.apply_item_totals() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE order_service.orders o
        SET item_count = o.item_count + d.quantity, subtotal = o.subtotal + d.amount
        FROM (
            SELECT order_id, sum(quantity) AS quantity, sum(line_total) AS amount
            FROM new_items GROUP BY order_id
        ) d
        WHERE o.id = d.order_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE order_service.orders o
        SET item_count = o.item_count - d.quantity, subtotal = o.subtotal - d.amount
        FROM (
            SELECT order_id, sum(quantity) AS quantity, sum(line_total) AS amount
            FROM old_items GROUP BY order_id
        ) d
        WHERE o.id = d.order_id;
    ELSE
        UPDATE order_service.orders o
        SET item_count = o.item_count + d.quantity, subtotal = o.subtotal + d.amount
        FROM (
            SELECT order_id, sum(quantity) AS quantity, sum(amount) AS amount
            FROM (
                SELECT order_id, quantity, line_total AS amount FROM new_items
                UNION ALL
                SELECT order_id, -quantity, -line_total FROM old_items
            ) changes
            GROUP BY order_id
            HAVING sum(quantity) <> 0 OR sum(amount) <> 0
        ) d
        WHERE o.id = d.order_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER order_items_totals_insert AFTER INSERT ON order_service.order_items
    REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.apply_item_totals();
CREATE TRIGGER order_items_totals_update AFTER UPDATE ON order_service.order_items
    REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.apply_item_totals();
CREATE TRIGGER order_items_totals_delete AFTER DELETE ON order_service.order_items
    REFERENCING OLD TABLE AS old_items
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.apply_item_totals();

-- The order's payment_status follows its most recently written payment.
CREATE FUNCTION order_service.apply_payment_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE order_service.orders o
    SET payment_status = p.status
    FROM (
        SELECT DISTINCT ON (order_id) order_id, status
        FROM new_payments
        ORDER BY order_id, updated_at DESC, created_at DESC
    ) p
    WHERE o.id = p.order_id AND o.payment_status IS DISTINCT FROM p.status;
    RETURN NULL;
END
$$;

CREATE TRIGGER payments_status_insert AFTER INSERT ON order_service.payments
    REFERENCING NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.apply_payment_status();
CREATE TRIGGER payments_status_update AFTER UPDATE ON order_service.payments
    REFERENCING NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.apply_payment_status();
