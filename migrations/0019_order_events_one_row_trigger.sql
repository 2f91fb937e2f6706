-- Order events and ledger entries from one row-level trigger function (issue 25): the outbox's tax on a
-- checkout. Every event and entry keeps its content (the same payload and ledger_entry functions, the same
-- event types, written under the same row lock in the same statement); only the triggers that write them
-- change.
--
-- Before: each UPDATE of orders ran 0012's statement-level INSERT ... SELECT over the transition tables (a
-- join of old and new rows, also for statements that change nothing published), and 0015's row-level ledger
-- trigger was a second function call for the same row; an INSERT likewise called two functions. Now one
-- row-level function per visible order's change writes the order's ledger entries, then its event (the
-- order 0015's triggers gave them), or returns at once when no payload column changed. Measured side by side
-- in one scratch database (docs/relay.md, "Cheaper triggers").
--
-- The transition tables stay: orders_status_history_update (0005) reads them.

SET LOCAL ROLE order_service_owner;

CREATE OR REPLACE FUNCTION order_service.emit_order_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- whether analytics saw the old row: an update's old row with items once (0012), never an insert's
    was_visible boolean := TG_OP = 'UPDATE' AND (OLD.announced OR OLD.item_count > 0);
BEGIN
    -- the payload's columns; updated_at alone is not a change. Here, not in the trigger's WHEN clause:
    -- PostgreSQL parses a WHEN clause again for every statement, this function's once per session.
    IF TG_OP = 'UPDATE'
        AND (NEW.user_id, NEW.restaurant_id, NEW.restaurant_name, NEW.city, NEW.cuisine, NEW.status,
             NEW.item_count, NEW.subtotal, NEW.delivery_fee, NEW.tip, NEW.currency, NEW.payment_status,
             NEW.cancel_reason, NEW.delivery_location, NEW.placed_at, NEW.promised_at)
        IS NOT DISTINCT FROM
            (OLD.user_id, OLD.restaurant_id, OLD.restaurant_name, OLD.city, OLD.cuisine, OLD.status,
             OLD.item_count, OLD.subtotal, OLD.delivery_fee, OLD.tip, OLD.currency, OLD.payment_status,
             OLD.cancel_reason, OLD.delivery_location, OLD.placed_at, OLD.promised_at)
    THEN
        RETURN NULL;
    END IF;
    -- 0015's ledger: only when the order arrives or a ledger fact or dimension changes
    IF NOT was_visible
        OR (NEW.status = 'cancelled', NEW.total, NEW.subtotal, NEW.item_count, NEW.restaurant_id,
            NEW.restaurant_name, NEW.city, NEW.cuisine, NEW.placed_at)
           IS DISTINCT FROM
           (OLD.status = 'cancelled', OLD.total, OLD.subtotal, OLD.item_count, OLD.restaurant_id,
            OLD.restaurant_name, OLD.city, OLD.cuisine, OLD.placed_at)
    THEN
        DELETE FROM order_service.orders_outside_ledger WHERE order_id = NEW.id;
        -- the old state leaves only if the ledger counted it: visible and not on the list
        IF was_visible AND NOT FOUND THEN
            INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
            VALUES ('order_ledger', OLD.id, 'OrderLedgerEntry', order_service.ledger_entry(OLD, -1), 1);
        END IF;
        INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        VALUES ('order_ledger', NEW.id, 'OrderLedgerEntry', order_service.ledger_entry(NEW, 1), 1);
    END IF;
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    VALUES (
        'order',
        NEW.id,
        CASE
            WHEN NOT was_visible THEN 'OrderPlaced'
            WHEN NEW.status = 'cancelled' AND OLD.status <> 'cancelled' THEN 'OrderCancelled'
            WHEN NEW.status <> OLD.status THEN 'OrderStatusChanged'
            WHEN NEW.payment_status IS DISTINCT FROM OLD.payment_status AND NEW.payment_status = 'captured'
                THEN 'PaymentCaptured'
            WHEN NEW.payment_status IS DISTINCT FROM OLD.payment_status AND NEW.payment_status = 'refunded'
                THEN 'PaymentRefunded'
            ELSE 'OrderUpdated'
        END,
        order_service.order_payload(NEW),
        1
    );
    PERFORM pg_notify('nibble_outbox', 'order_service');  -- repeats within a transaction are folded into one
    RETURN NULL;
END
$$;

DROP TRIGGER orders_outbox ON order_service.orders;
DROP TRIGGER orders_ledger ON order_service.orders;
DROP TRIGGER orders_outbox_insert ON order_service.orders;
DROP TRIGGER orders_ledger_insert ON order_service.orders;
DROP FUNCTION order_service.emit_order_placed_on_insert();
DROP FUNCTION order_service.emit_ledger_entries();

-- NEW.announced: visible now (orders_announced has set it from the old row and the new item_count). Every
-- ledger change is also a change of the payload's columns (total is subtotal + delivery_fee + tip, and an
-- order becoming visible changes item_count), so the function's first test lets through every row the
-- ledger needs.
CREATE TRIGGER orders_outbox AFTER UPDATE ON order_service.orders
    FOR EACH ROW WHEN (NEW.announced)
    EXECUTE FUNCTION order_service.emit_order_events();

-- The order service inserts an order with no items, so this fires for none of its rows; a row inserted
-- already visible is placed, and counted by the ledger, by its INSERT.
CREATE TRIGGER orders_outbox_insert AFTER INSERT ON order_service.orders
    FOR EACH ROW WHEN (NEW.announced OR NEW.item_count > 0)
    EXECUTE FUNCTION order_service.emit_order_events();
