-- "An order is visible to analytics" (0012: it has had items) as one function, order_service.is_visible(o),
-- so the snapshots, the runtime queries (pipeline/*/sql/) and the tests say it once. A one-expression SQL
-- function: the planner inlines it, so a query using it plans as with the expression written out.
-- The row triggers' WHEN clauses (0019) keep the expression: an existing trigger's WHEN cannot be altered,
-- only dropped and created again, which is not worth a window without triggers on orders.

SET LOCAL ROLE order_service_owner;

CREATE FUNCTION order_service.is_visible(o order_service.orders) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT o.announced OR o.item_count > 0
$$;
COMMENT ON FUNCTION order_service.is_visible(order_service.orders) IS
    'Whether analytics holds this order: it has had items (announced, or items now, for rows not updated '
    'since migration 0012).';

-- 0014's and 0015's snapshot functions, unchanged but for the rule.
CREATE OR REPLACE FUNCTION order_service.emit_order_state_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer;
BEGIN
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'order', o.id, 'OrderSnapshot', order_service.order_payload(o), 1
    FROM order_service.orders o
    WHERE o.id = ANY (ids) AND order_service.is_visible(o)
    ORDER BY o.id
    FOR SHARE;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'order_service');
    END IF;
    RETURN emitted;
END
$$;

CREATE OR REPLACE FUNCTION order_service.emit_order_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer := order_service.emit_order_state_snapshots(ids);  -- it notifies the relay
BEGIN
    WITH counted AS (
        DELETE FROM order_service.orders_outside_ledger outside
        USING order_service.orders o
        WHERE outside.order_id = o.id AND o.id = ANY (ids) AND order_service.is_visible(o)
        RETURNING o AS state
    )
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'order_ledger', (c.state).id, 'OrderLedgerEntry', order_service.ledger_entry(c.state, 1), 1
    FROM counted c
    ORDER BY (c.state).id;
    RETURN emitted;
END
$$;
