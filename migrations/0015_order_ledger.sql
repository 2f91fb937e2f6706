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
-- STABLE like jsonb_build_object, so that the planner inlines it (an IMMUTABLE one would be called, at a cost
-- of 9% of a checkout's throughput).
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

-- Row-level with a WHEN clause, unlike the statement-level event trigger: most updates (status steps, payment)
-- change no ledger fact, and the WHEN clause skips them without a function call. Measured side by side with
-- bench_outbox_triggers' checkouts, the order events cost 16.8% of the throughput, with this trigger 22.4%;
-- the same entries written by 0012's event INSERT (one statement, no trigger of their own) 25.4%. The order
-- event of the same change is written by orders_outbox, which also notifies the relay.
CREATE FUNCTION order_service.emit_ledger_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM order_service.orders_outside_ledger WHERE order_id = NEW.id;
    -- the old state leaves only if the ledger counted it: an update's old row, visible and not on the list
    IF TG_OP = 'UPDATE' AND NOT FOUND AND (OLD.announced OR OLD.item_count > 0) THEN
        INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        VALUES ('order_ledger', OLD.id, 'OrderLedgerEntry', order_service.ledger_entry(OLD, -1), 1);
    END IF;
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    VALUES ('order_ledger', NEW.id, 'OrderLedgerEntry', order_service.ledger_entry(NEW, 1), 1);
    RETURN NULL;
END
$$;

-- NEW.announced: visible now (orders_announced has set it from the old row and the new item_count). An order
-- on the outside list whose update changes no fact stays on it, uncounted, until a fact changes or a
-- backfill snapshots it.
CREATE TRIGGER orders_ledger AFTER UPDATE ON order_service.orders
    FOR EACH ROW
    WHEN (NEW.announced AND (
        NOT (OLD.announced OR OLD.item_count > 0)
        -- the ledger's facts and dimensions; any other change adds nothing
        OR (NEW.status = 'cancelled', NEW.total, NEW.subtotal, NEW.item_count, NEW.restaurant_id,
            NEW.restaurant_name, NEW.city, NEW.cuisine, NEW.placed_at)
           IS DISTINCT FROM
           (OLD.status = 'cancelled', OLD.total, OLD.subtotal, OLD.item_count, OLD.restaurant_id,
            OLD.restaurant_name, OLD.city, OLD.cuisine, OLD.placed_at)))
    EXECUTE FUNCTION order_service.emit_ledger_entries();

-- An order inserted already visible (0012's orders_outbox_insert places it): its state arrives.
CREATE TRIGGER orders_ledger_insert AFTER INSERT ON order_service.orders
    FOR EACH ROW WHEN (NEW.announced OR NEW.item_count > 0)
    EXECUTE FUNCTION order_service.emit_ledger_entries();

-- 0014's snapshots keep their function, under a new name; the backfill's emit_order_snapshots adds the ledger
-- entry of each order the ledger has not counted. The renamed function locks the rows (FOR SHARE) in its
-- statement; the statement below runs on a snapshot taken after any writer that held one of them committed,
-- so it sees that writer's own ledger entry (and the list without the order): a state it counted is never
-- counted again.
ALTER FUNCTION order_service.emit_order_snapshots(uuid[]) RENAME TO emit_order_state_snapshots;

CREATE FUNCTION order_service.emit_order_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer := order_service.emit_order_state_snapshots(ids);  -- it notifies the relay
BEGIN
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
    RETURN emitted;
END
$$;
