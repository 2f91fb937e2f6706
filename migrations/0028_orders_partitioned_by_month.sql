-- order_service.orders partitioned by month of created_at (issue 24), its months made ahead by pg_partman
-- (0016's extension and background worker), a DEFAULT partition catching a row no month covers, and months
-- past a retention setting detached (never dropped) into order_service_archive: none by default.
--
-- The key: created_at, the moment the row was written, which never changes (orders_refuse_new_created_at).
-- Not placed_at, a payload column that may move (the ledger retracts and re-adds an order whose placed_at
-- changes): moving a row to another partition is a DELETE plus an INSERT, which fires
-- orders_refuse_delete, orders_outbox_insert and no AFTER UPDATE trigger. Not a placed_month filled from
-- placed_at by a BEFORE INSERT trigger: PostgreSQL picks a row's partition before the partition's BEFORE
-- triggers run, and refuses a trigger that changes it ("moving row to another partition during a BEFORE FOR
-- EACH ROW trigger is not supported"), so the key must come from the writer or a column default. For live
-- traffic created_at and placed_at are the same now(); rows written later for the past (`nibble generate
-- --history`) are filed under the month they were written.
--
-- A key of a partitioned table holds its partition column: the primary key becomes (id, created_at), and
-- order_items, payments and order_status_history carry order_created_at with a two-column foreign key
-- (MATCH FULL: an item for no order is refused, as before). A BEFORE INSERT trigger fills it from the order,
-- so writers are unchanged; the item and payment triggers update their orders by (id, created_at), one
-- partition each.
--
-- The move: copy and swap in this one transaction, every order table locked (writers wait for it; measured
-- in docs/migrations.md), with session_replication_role = replica so that no trigger fires for the copied
-- rows: the move writes no outbox row, no ledger entry, no history or audit row, and no updated_at. The
-- functions taking the row type order_service.orders are created again against the new table (a renamed
-- table keeps its row type), and every trigger and grant the old table had is given to the new one.

CREATE SCHEMA order_service_archive AUTHORIZATION order_service_owner;

LOCK TABLE order_service.orders, order_service.order_items, order_service.payments,
    order_service.order_status_history IN ACCESS EXCLUSIVE MODE;
SET LOCAL session_replication_role = replica;

SET LOCAL ROLE order_service_owner;

ALTER TABLE order_service.order_items DROP CONSTRAINT order_items_order_id_fkey;
ALTER TABLE order_service.payments DROP CONSTRAINT payments_order_id_fkey;
ALTER TABLE order_service.order_status_history DROP CONSTRAINT order_status_history_order_id_fkey;
DROP FUNCTION order_service.order_payload(order_service.orders);
DROP FUNCTION order_service.ledger_entry(order_service.orders, integer);
DROP FUNCTION order_service.is_visible(order_service.orders);

ALTER TABLE order_service.orders RENAME TO orders_unpartitioned;
ALTER INDEX order_service.orders_pkey RENAME TO orders_unpartitioned_pkey;
DROP INDEX order_service.orders_user_id_idx, order_service.orders_restaurant_id_idx,
    order_service.orders_placed_at_idx, order_service.orders_delivery_location_gist,
    order_service.orders_customer_pseudonym_idx;

CREATE TABLE order_service.orders (
    LIKE order_service.orders_unpartitioned INCLUDING ALL EXCLUDING INDEXES,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
COMMENT ON COLUMN order_service.orders.created_at IS
    'When the row was written; the partition key (by month), never changed (migration 0028).';

RESET ROLE;

-- Months from the oldest order's on (so that every order has its month and the DEFAULT partition starts
-- empty), 4 ahead. pg_partman 4.x (Debian) calls native range partitioning 'native', 5.x 'range'.
SELECT partman.create_parent(
    p_parent_table := 'order_service.orders',
    p_control := 'created_at',
    p_type := (SELECT CASE WHEN extversion LIKE '4.%' THEN 'native' ELSE 'range' END
               FROM pg_extension WHERE extname = 'pg_partman'),
    p_interval := '1 month',
    p_premake := 4,
    p_start_partition := (SELECT date_trunc('month', coalesce(min(created_at), now()), 'UTC')::text
                          FROM order_service.orders_unpartitioned)
);

-- Orders are kept: no retention. Set one (docs/migrations.md) and the months past it are detached into
-- order_service_archive, their rows kept; partitions made later by the background worker (as postgres) are
-- handed to the schema's owner with the parent's grants.
UPDATE partman.part_config
SET retention = NULL,
    retention_keep_table = true,
    retention_schema = 'order_service_archive',
    infinite_time_partitions = true,
    inherit_privileges = true
WHERE parent_table = 'order_service.orders';

-- The old table's grants (0021, 0025; the order_service login's come from 0021's default privileges), then
-- onto every partition, whose owner becomes the parent's.
GRANT SELECT, UPDATE (updated_at) ON order_service.orders TO nibble_backfill;
GRANT SELECT ON order_service.orders TO nibble_verify;
GRANT SELECT (id, restaurant_id, city) ON order_service.orders TO admin_service_owner;
SELECT partman.reapply_privileges('order_service.orders');

INSERT INTO order_service.orders (
    id, user_id, restaurant_id, restaurant_name, city, cuisine, status, item_count, subtotal, delivery_fee, tip,
    currency, payment_status, cancel_reason, delivery_address_id, delivery_location, special_instructions,
    placed_at, promised_at, created_at, updated_at, announced, customer_pseudonym
)
SELECT id, user_id, restaurant_id, restaurant_name, city, cuisine, status, item_count, subtotal, delivery_fee, tip,
    currency, payment_status, cancel_reason, delivery_address_id, delivery_location, special_instructions,
    placed_at, promised_at, created_at, updated_at, announced, customer_pseudonym
FROM order_service.orders_unpartitioned;

SET LOCAL ROLE order_service_owner;

ALTER TABLE order_service.order_items ADD COLUMN order_created_at timestamptz;
ALTER TABLE order_service.payments ADD COLUMN order_created_at timestamptz;
ALTER TABLE order_service.order_status_history ADD COLUMN order_created_at timestamptz;
UPDATE order_service.order_items c SET order_created_at = o.created_at
FROM order_service.orders_unpartitioned o WHERE o.id = c.order_id;
UPDATE order_service.payments c SET order_created_at = o.created_at
FROM order_service.orders_unpartitioned o WHERE o.id = c.order_id;
UPDATE order_service.order_status_history c SET order_created_at = o.created_at
FROM order_service.orders_unpartitioned o WHERE o.id = c.order_id;
DROP TABLE order_service.orders_unpartitioned;

ALTER TABLE order_service.order_items ADD CONSTRAINT order_items_order_fkey
    FOREIGN KEY (order_id, order_created_at) REFERENCES order_service.orders (id, created_at) MATCH FULL;
ALTER TABLE order_service.payments ADD CONSTRAINT payments_order_fkey
    FOREIGN KEY (order_id, order_created_at) REFERENCES order_service.orders (id, created_at) MATCH FULL;
ALTER TABLE order_service.order_status_history ADD CONSTRAINT order_status_history_order_fkey
    FOREIGN KEY (order_id, order_created_at) REFERENCES order_service.orders (id, created_at) MATCH FULL;

CREATE INDEX orders_user_id_idx ON order_service.orders (user_id);
CREATE INDEX orders_restaurant_id_idx ON order_service.orders (restaurant_id);
CREATE INDEX orders_placed_at_idx ON order_service.orders (placed_at);
CREATE INDEX orders_delivery_location_gist ON order_service.orders USING gist (delivery_location);
CREATE INDEX orders_customer_pseudonym_idx ON order_service.orders (customer_pseudonym)
    WHERE customer_pseudonym IS NOT NULL;

-- 0027's, 0015's and 0020's functions, unchanged, on the new row type.
CREATE FUNCTION order_service.order_payload(o order_service.orders) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'order_id', o.id,
        'customer_pseudonym', o.customer_pseudonym,
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
        'delivery_lat', public.coarse_coordinate(public.st_y(o.delivery_location::public.geometry)),
        'delivery_lon', public.coarse_coordinate(public.st_x(o.delivery_location::public.geometry)),
        'placed_at', o.placed_at,
        'promised_at', o.promised_at,
        'updated_at', o.updated_at
    )
$$;

CREATE FUNCTION order_service.ledger_entry(o order_service.orders, sign integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'order_id', o.id,
        'restaurant_id', o.restaurant_id,
        'restaurant_name', o.restaurant_name,
        'city', o.city,
        'cuisine', o.cuisine,
        'placed_at', o.placed_at,
        'orders', sign,
        'cancelled', CASE WHEN o.status = 'cancelled' THEN sign ELSE 0 END,
        'gmv_cents', CASE WHEN o.status = 'cancelled' THEN 0 ELSE sign * (o.total * 100)::bigint END,
        'subtotal_cents', CASE WHEN o.status = 'cancelled' THEN 0 ELSE sign * (o.subtotal * 100)::bigint END,
        'items', CASE WHEN o.status = 'cancelled' THEN 0 ELSE sign * o.item_count END
    )
$$;

CREATE FUNCTION order_service.is_visible(o order_service.orders) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT o.announced OR o.item_count > 0
$$;
COMMENT ON FUNCTION order_service.is_visible(order_service.orders) IS
    'Whether analytics holds this order: it has had items (announced, or items now, for rows not updated '
    'since migration 0012).';

-- The partition key never changes, so no update moves an order to another partition.
CREATE FUNCTION order_service.refuse_new_created_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION
        'order_service.orders: created_at of order % cannot change: it files the order in its month''s partition',
        OLD.id USING ERRCODE = 'restrict_violation';
END
$$;

-- An item's, payment's or history row's copy of its order's key, so that writers name only order_id. An
-- order id alone is looked up in each month's primary key index (the one with the row answers).
CREATE FUNCTION order_service.set_order_created_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.order_created_at := (SELECT o.created_at FROM order_service.orders o WHERE o.id = NEW.order_id);
    RETURN NEW;
END
$$;

-- 0005's item totals, each order updated by its whole key: one partition per order.
CREATE OR REPLACE FUNCTION order_service.apply_item_totals() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE order_service.orders o
        SET item_count = o.item_count + d.quantity, subtotal = o.subtotal + d.amount
        FROM (
            SELECT order_id, order_created_at, sum(quantity) AS quantity, sum(line_total) AS amount
            FROM new_items GROUP BY order_id, order_created_at
        ) d
        WHERE o.id = d.order_id AND o.created_at = d.order_created_at;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE order_service.orders o
        SET item_count = o.item_count - d.quantity, subtotal = o.subtotal - d.amount
        FROM (
            SELECT order_id, order_created_at, sum(quantity) AS quantity, sum(line_total) AS amount
            FROM old_items GROUP BY order_id, order_created_at
        ) d
        WHERE o.id = d.order_id AND o.created_at = d.order_created_at;
    ELSE
        UPDATE order_service.orders o
        SET item_count = o.item_count + d.quantity, subtotal = o.subtotal + d.amount
        FROM (
            SELECT order_id, order_created_at, sum(quantity) AS quantity, sum(amount) AS amount
            FROM (
                SELECT order_id, order_created_at, quantity, line_total AS amount FROM new_items
                UNION ALL
                SELECT order_id, order_created_at, -quantity, -line_total FROM old_items
            ) changes
            GROUP BY order_id, order_created_at
            HAVING sum(quantity) <> 0 OR sum(amount) <> 0
        ) d
        WHERE o.id = d.order_id AND o.created_at = d.order_created_at;
    END IF;
    RETURN NULL;
END
$$;

-- 0023's payment status (0005's rule, skipped while re-keying), by the order's whole key.
CREATE OR REPLACE FUNCTION order_service.apply_payment_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('nibble.rekeying', true) = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE order_service.orders o
    SET payment_status = p.status
    FROM (
        SELECT DISTINCT ON (order_id) order_id, order_created_at, status
        FROM new_payments
        ORDER BY order_id, updated_at DESC, created_at DESC
    ) p
    WHERE o.id = p.order_id AND o.created_at = p.order_created_at AND o.payment_status IS DISTINCT FROM p.status;
    RETURN NULL;
END
$$;

-- 0005's status history, with the order's key from the row at hand.
CREATE OR REPLACE FUNCTION order_service.record_status_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO order_service.order_status_history (order_id, order_created_at, from_status, to_status)
        SELECT n.id, n.created_at, NULL, n.status FROM new_orders n;
    ELSE
        INSERT INTO order_service.order_status_history (order_id, order_created_at, from_status, to_status)
        SELECT n.id, n.created_at, o.status, n.status
        FROM new_orders n JOIN old_orders o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER order_items_order_created_at BEFORE INSERT ON order_service.order_items
    FOR EACH ROW WHEN (NEW.order_created_at IS NULL) EXECUTE FUNCTION order_service.set_order_created_at();
CREATE TRIGGER order_items_order_created_at_update BEFORE UPDATE OF order_id ON order_service.order_items
    FOR EACH ROW WHEN (NEW.order_id <> OLD.order_id) EXECUTE FUNCTION order_service.set_order_created_at();
CREATE TRIGGER payments_order_created_at BEFORE INSERT ON order_service.payments
    FOR EACH ROW WHEN (NEW.order_created_at IS NULL) EXECUTE FUNCTION order_service.set_order_created_at();
CREATE TRIGGER payments_order_created_at_update BEFORE UPDATE OF order_id ON order_service.payments
    FOR EACH ROW WHEN (NEW.order_id <> OLD.order_id) EXECUTE FUNCTION order_service.set_order_created_at();
CREATE TRIGGER order_status_history_order_created_at BEFORE INSERT ON order_service.order_status_history
    FOR EACH ROW WHEN (NEW.order_created_at IS NULL) EXECUTE FUNCTION order_service.set_order_created_at();

-- The old table's triggers (0005, 0012, 0019, 0027), as they were; a partitioned table's row triggers are
-- cloned onto every partition, present and future, and its statement triggers fire for statements on it.
CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON order_service.orders
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER orders_status_history_insert AFTER INSERT ON order_service.orders
    REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.record_status_history();
CREATE TRIGGER orders_status_history_update AFTER UPDATE ON order_service.orders
    REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.record_status_history();
CREATE TRIGGER orders_announced BEFORE UPDATE ON order_service.orders
    FOR EACH ROW
    WHEN (NEW.announced IS DISTINCT FROM (OLD.announced OR OLD.item_count > 0 OR NEW.item_count > 0))
    EXECUTE FUNCTION order_service.set_announced();
CREATE TRIGGER orders_refuse_delete BEFORE DELETE ON order_service.orders
    FOR EACH ROW WHEN (OLD.announced OR OLD.item_count > 0)
    EXECUTE FUNCTION public.refuse_unpublishable_change('order', 'cancel the order instead');
CREATE TRIGGER orders_refuse_new_id BEFORE UPDATE OF id ON order_service.orders
    FOR EACH ROW WHEN (OLD.id <> NEW.id AND (OLD.announced OR OLD.item_count > 0))
    EXECUTE FUNCTION public.refuse_unpublishable_change('order', 'an order keeps its id');
CREATE TRIGGER orders_refuse_new_created_at BEFORE UPDATE OF created_at ON order_service.orders
    FOR EACH ROW WHEN (NEW.created_at IS DISTINCT FROM OLD.created_at)
    EXECUTE FUNCTION order_service.refuse_new_created_at();
CREATE TRIGGER orders_outbox AFTER UPDATE ON order_service.orders
    FOR EACH ROW WHEN (NEW.announced)
    EXECUTE FUNCTION order_service.emit_order_events();
CREATE TRIGGER orders_outbox_insert AFTER INSERT ON order_service.orders
    FOR EACH ROW WHEN (NEW.announced OR NEW.item_count > 0)
    EXECUTE FUNCTION order_service.emit_order_events();
CREATE TRIGGER orders_customer_pseudonym BEFORE INSERT ON order_service.orders
    FOR EACH ROW EXECUTE FUNCTION order_service.assign_customer_pseudonym();
CREATE TRIGGER orders_customer_pseudonym_update BEFORE UPDATE OF user_id ON order_service.orders
    FOR EACH ROW WHEN (NEW.user_id IS DISTINCT FROM OLD.user_id)
    EXECUTE FUNCTION order_service.assign_customer_pseudonym();

RESET ROLE;
SET LOCAL session_replication_role = origin;  -- the copy is done: triggers fire again

-- 0012's refusal names the table written, not the partition its row trigger fired on (the error is the
-- same for every table, partitioned or not).
CREATE OR REPLACE FUNCTION public.refuse_unpublishable_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.%: % of % % refused: it is published to analytics, which cannot forget or re-key it',
        TG_TABLE_SCHEMA,
        (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = coalesce(pg_partition_root(TG_RELID), TG_RELID)),
        TG_OP, TG_ARGV[0], OLD.id
        USING ERRCODE = 'restrict_violation', HINT = TG_ARGV[1];
END
$$;

-- 0022's audit triggers, as the migrating superuser (the owners have no USAGE on schema audit).
CREATE TRIGGER orders_audit_insert AFTER INSERT ON order_service.orders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_new_status('order');
CREATE TRIGGER orders_audit_update AFTER UPDATE OF status ON order_service.orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION audit.record_status_change('order');

ANALYZE order_service.orders;
