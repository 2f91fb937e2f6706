-- The order ledger (issue 14; docs/events.md, "The order ledger"): signed changes to the order facts analytics
-- sums, so that Pinot can answer the order queries from an append-only table with star-tree indexes (its upsert
-- tables cannot carry one). Summed over the entries of one order: orders = 1, cancelled = 1 while it is
-- cancelled, and gmv_cents / subtotal_cents / items = its total, subtotal and item count while it is not.
--
-- An entry is written only when one of those facts, or a dimension they are sliced by, changes: the old state
-- leaves (its measures negated) and the new one arrives, in the transaction of the change. The entries travel
-- on their own, uncompacted stream (aggregate type `order_ledger`, topic nibble.order_ledger), keyed by the
-- order, so the relay's per-aggregate order, parking and re-sends apply unchanged; Pinot de-duplicates them
-- on their event id, so a re-sent entry never doubles a sum.
--
-- Whether the old state was counted: every order visible when this migration runs was never counted (the
-- ledger starts empty), so it is listed in orders_outside_ledger. Its next entry, a trigger's or a backfill
-- snapshot's, counts its whole state and takes it off the list; a backfill snapshot of an order already
-- counted writes no entry, so re-running a backfill never counts an order twice.

SET LOCAL ROLE order_service_owner;

CREATE TABLE order_service.orders_outside_ledger (
    order_id uuid PRIMARY KEY
);
COMMENT ON TABLE order_service.orders_outside_ledger IS
    'Visible orders the analytics ledger has not counted (those visible when migration 0015 ran); the next '
    'ledger entry of one counts its whole state and removes it. Empty once a backfill has run.';

INSERT INTO order_service.orders_outside_ledger (order_id)
SELECT id FROM order_service.orders WHERE announced OR item_count > 0;

-- One ledger entry: the state `o` arriving (sign 1) or leaving (sign -1). Money as the order payload has it.
CREATE FUNCTION order_service.ledger_entry(o order_service.orders, sign integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
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

CREATE FUNCTION order_service.emit_ledger_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    WITH changed AS (
        SELECT n.id, (o.announced OR o.item_count > 0) AND outside.order_id IS NULL AS counted
        FROM new_orders n
        JOIN old_orders o ON o.id = n.id
        LEFT JOIN order_service.orders_outside_ledger outside ON outside.order_id = n.id
        -- n.announced: visible now (orders_announced has set it from the old row and the new item_count)
        WHERE n.announced
            AND (
                NOT (o.announced OR o.item_count > 0) OR outside.order_id IS NOT NULL
                -- the ledger's facts and dimensions; any other change adds nothing
                OR (n.status = 'cancelled', n.total, n.subtotal, n.item_count, n.restaurant_id, n.restaurant_name,
                    n.city, n.cuisine, n.placed_at)
                   IS DISTINCT FROM
                   (o.status = 'cancelled', o.total, o.subtotal, o.item_count, o.restaurant_id, o.restaurant_name,
                    o.city, o.cuisine, o.placed_at)
            )
    )
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    -- the old state leaves, if the ledger counted it
    SELECT 'order_ledger', o.id, 'OrderLedgerEntry', order_service.ledger_entry(o, -1), 1
    FROM changed c JOIN old_orders o ON o.id = c.id
    WHERE c.counted
    UNION ALL
    SELECT 'order_ledger', n.id, 'OrderLedgerEntry', order_service.ledger_entry(n, 1), 1
    FROM changed c JOIN new_orders n ON n.id = c.id;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        -- counted now: only orders that were on the list and got their entry above (visible now)
        DELETE FROM order_service.orders_outside_ledger outside
        USING new_orders n
        WHERE outside.order_id = n.id AND n.announced;
        PERFORM pg_notify('nibble_outbox', 'order_service');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_ledger AFTER UPDATE ON order_service.orders
    REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_service.emit_ledger_entries();

CREATE FUNCTION order_service.emit_ledger_entry_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    VALUES ('order_ledger', NEW.id, 'OrderLedgerEntry', order_service.ledger_entry(NEW, 1), 1);
    PERFORM pg_notify('nibble_outbox', 'order_service');
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_ledger_insert AFTER INSERT ON order_service.orders
    FOR EACH ROW WHEN (NEW.announced OR NEW.item_count > 0)
    EXECUTE FUNCTION order_service.emit_ledger_entry_on_insert();

-- 0014's snapshots, plus the ledger entry of each order the ledger has not counted. The rows are locked
-- (FOR SHARE) by the first statement; the second runs on a snapshot taken after any writer that held one
-- of them committed, so it sees that writer's own ledger entry (and the list without the order) and a
-- state it counted is never counted again.
CREATE OR REPLACE FUNCTION order_service.emit_order_snapshots(ids uuid[]) RETURNS integer
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
    WITH counted AS (
        DELETE FROM order_service.orders_outside_ledger outside
        USING order_service.orders o
        WHERE outside.order_id = o.id AND o.id = ANY (ids) AND (o.announced OR o.item_count > 0)
        RETURNING o AS state
    )
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'order_ledger', (c.state).id, 'OrderLedgerEntry', order_service.ledger_entry(c.state, 1), 1
    FROM counted c
    ORDER BY (c.state).id;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'order_service');
    END IF;
    RETURN emitted;
END
$$;
