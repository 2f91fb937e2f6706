-- Analytics without personal data (issue 22 item 3; docs/security.md, "Analytics without personal data").
-- From this migration on, order and ticket events carry the customer's pseudonym instead of their user_id, and
-- order and delivery events a drop-off point rounded to 3 decimals of a degree (OrderEvent v2 and TicketEvent
-- v2: avro_schemas/*/v2.avsc; DeliveryEvent keeps v1, whose fields do not change). Rows of v1 still in an
-- outbox are published as v1.
-- Deploy `nibble schemas apply`, relays that know v2 and `nibble pinot apply` (then roll the segments,
-- docs/events.md "Evolving a schema") before this migration.
--
-- The pseudonym: a random uuid per customer, held in order_service.customer_pseudonyms, its only link to the
-- customer. It is assigned once, when the customer's first order or ticket is inserted, and copied onto the
-- row, so a payload reads it without a look-up per event. `nibble forget USER` deletes the link and clears
-- the copies (each clearing publishes the row's state without it): the pseudonyms already in Kafka and Pinot
-- then name nobody. Rows from before this migration hold no pseudonym until one is set
-- (docs/security.md says how).

-- The one coarsening rule, for the payloads and for whoever compares with them (tests/support/exactness.py,
-- pipeline/privacy/coarsening.py). Inlined by the planner.
CREATE FUNCTION public.coarse_coordinate(degrees double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT round(degrees::numeric, 3)::double precision
$$;
COMMENT ON FUNCTION public.coarse_coordinate(double precision) IS
    'A latitude or longitude rounded to 3 decimals (about 110 m of latitude) for analytics (migration 0027).';

SET LOCAL ROLE order_service_owner;

CREATE TABLE order_service.customer_pseudonyms (
    user_id uuid PRIMARY KEY,
    pseudonym uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE order_service.customer_pseudonyms IS
    'The only link between a customer and the pseudonym analytics knows them by (migration 0027); '
    '`nibble forget` deletes it.';

-- The customer's pseudonym, assigned on first use. SECURITY DEFINER: admin_service's tickets use it too.
CREATE FUNCTION order_service.customer_pseudonym(customer uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found_pseudonym uuid;
BEGIN
    SELECT p.pseudonym INTO found_pseudonym FROM order_service.customer_pseudonyms p WHERE p.user_id = customer;
    IF found_pseudonym IS NULL THEN
        INSERT INTO order_service.customer_pseudonyms (user_id) VALUES (customer)
        ON CONFLICT (user_id) DO NOTHING
        RETURNING pseudonym INTO found_pseudonym;
        IF found_pseudonym IS NULL THEN  -- a concurrent first order won; its row is committed now
            SELECT p.pseudonym INTO found_pseudonym
            FROM order_service.customer_pseudonyms p WHERE p.user_id = customer;
        END IF;
    END IF;
    RETURN found_pseudonym;
END
$$;
REVOKE EXECUTE ON FUNCTION order_service.customer_pseudonym(uuid) FROM PUBLIC;

CREATE FUNCTION order_service.assign_customer_pseudonym() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.customer_pseudonym := order_service.customer_pseudonym(NEW.user_id);
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION order_service.assign_customer_pseudonym() FROM PUBLIC;

-- Nullable, no default: no table rewrite; the rows that exist have none (see the top).
ALTER TABLE order_service.orders ADD COLUMN customer_pseudonym uuid;
CREATE INDEX orders_customer_pseudonym_idx ON order_service.orders (customer_pseudonym)
    WHERE customer_pseudonym IS NOT NULL;
CREATE TRIGGER orders_customer_pseudonym BEFORE INSERT ON order_service.orders
    FOR EACH ROW EXECUTE FUNCTION order_service.assign_customer_pseudonym();
CREATE TRIGGER orders_customer_pseudonym_update BEFORE UPDATE OF user_id ON order_service.orders
    FOR EACH ROW WHEN (NEW.user_id IS DISTINCT FROM OLD.user_id)
    EXECUTE FUNCTION order_service.assign_customer_pseudonym();

-- As 0009, with the pseudonym instead of user_id (v2 writes user_id null) and the drop-off point coarsened.
CREATE OR REPLACE FUNCTION order_service.order_payload(o order_service.orders) RETURNS jsonb
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

-- As 0019, with schema_version 2 and the pseudonym among the payload's columns (its clearing by `nibble
-- forget` is an OrderUpdated; a new user_id brings a new pseudonym, so user_id itself is not compared).
CREATE OR REPLACE FUNCTION order_service.emit_order_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- whether analytics saw the old row: an update's old row with items once (0012), never an insert's
    was_visible boolean := TG_OP = 'UPDATE' AND (OLD.announced OR OLD.item_count > 0);
BEGIN
    -- the payload's columns; updated_at alone is not a change. Here, not in the trigger's WHEN clause:
    -- PostgreSQL parses a WHEN clause again for every statement, this function's once per session.
    IF TG_OP = 'UPDATE'
        AND (NEW.customer_pseudonym, NEW.restaurant_id, NEW.restaurant_name, NEW.city, NEW.cuisine, NEW.status,
             NEW.item_count, NEW.subtotal, NEW.delivery_fee, NEW.tip, NEW.currency, NEW.payment_status,
             NEW.cancel_reason, NEW.delivery_location, NEW.placed_at, NEW.promised_at)
        IS NOT DISTINCT FROM
            (OLD.customer_pseudonym, OLD.restaurant_id, OLD.restaurant_name, OLD.city, OLD.cuisine, OLD.status,
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
        2
    );
    PERFORM pg_notify('nibble_outbox', 'order_service');  -- repeats within a transaction are folded into one
    RETURN NULL;
END
$$;

-- As 0020, with schema_version 2.
CREATE OR REPLACE FUNCTION order_service.emit_order_state_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    emitted integer;
BEGIN
    INSERT INTO order_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'order', o.id, 'OrderSnapshot', order_service.order_payload(o), 2
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

RESET ROLE;
-- The order service's login; the ticket trigger's owner (the admin login may not see order_service at all).
GRANT EXECUTE ON FUNCTION order_service.customer_pseudonym(uuid) TO order_service, admin_service_owner;

SET LOCAL ROLE driver_service_owner;

-- As 0010, with the drop-off point coarsened (the pickup point is the restaurant's). DeliveryEvent stays v1:
-- its fields do not change, only how exact two values are (a version differing in docs alone is the same
-- schema to the registry), so its trigger and snapshot functions stay as they are.
CREATE OR REPLACE FUNCTION driver_service.delivery_payload(d driver_service.deliveries) RETURNS jsonb
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
        'dropoff_lat', public.coarse_coordinate(public.st_y(d.dropoff_location::public.geometry)),
        'dropoff_lon', public.coarse_coordinate(public.st_x(d.dropoff_location::public.geometry)),
        'distance_m', d.distance_m,
        'created_at', d.created_at,
        'promised_at', d.promised_at,
        'assigned_at', d.assigned_at,
        'picked_up_at', d.picked_up_at,
        'delivered_at', d.delivered_at,
        'updated_at', d.updated_at
    )
$$;

SET LOCAL ROLE admin_service_owner;

ALTER TABLE admin_service.support_tickets ADD COLUMN customer_pseudonym uuid;
CREATE INDEX support_tickets_customer_pseudonym_idx ON admin_service.support_tickets (customer_pseudonym)
    WHERE customer_pseudonym IS NOT NULL;

-- SECURITY DEFINER: as admin_service_owner, which may call the order service's function (0025's pattern).
CREATE FUNCTION admin_service.assign_customer_pseudonym() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.customer_pseudonym := order_service.customer_pseudonym(NEW.user_id);
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION admin_service.assign_customer_pseudonym() FROM PUBLIC;
CREATE TRIGGER support_tickets_customer_pseudonym BEFORE INSERT ON admin_service.support_tickets
    FOR EACH ROW EXECUTE FUNCTION admin_service.assign_customer_pseudonym();
CREATE TRIGGER support_tickets_customer_pseudonym_update BEFORE UPDATE OF user_id ON admin_service.support_tickets
    FOR EACH ROW WHEN (NEW.user_id IS DISTINCT FROM OLD.user_id)
    EXECUTE FUNCTION admin_service.assign_customer_pseudonym();

-- As 0025, with the pseudonym instead of user_id.
CREATE OR REPLACE FUNCTION admin_service.ticket_payload(t admin_service.support_tickets) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'ticket_id', t.id,
        'customer_pseudonym', t.customer_pseudonym,
        'order_id', t.order_id,
        'restaurant_id', o.restaurant_id,
        'city', o.city,
        'status', t.status,
        'priority', t.priority,
        'assigned_to', t.assigned_to,
        'created_at', t.created_at,
        'first_response_at', c.first_response_at,
        'resolved_at', t.resolved_at,
        'closed_at', CASE WHEN t.status = 'closed' THEN t.updated_at END,
        'updated_at', t.updated_at,
        'comment_count', c.comment_count
    )
    FROM (
        SELECT count(*) AS comment_count,
               min(k.created_at) FILTER (WHERE NOT coalesce(k.is_internal, false) AND k.user_id <> t.user_id)
                   AS first_response_at
        FROM admin_service.ticket_comments k
        WHERE k.ticket_id = t.id
    ) c
    LEFT JOIN LATERAL admin_service.ticket_order(t.order_id) o ON t.order_id IS NOT NULL
$$;

-- As 0025, with schema_version 2 and the pseudonym among the payload's columns (user_id, as for orders, not).
CREATE OR REPLACE FUNCTION admin_service.emit_ticket_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO admin_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT 'ticket', n.id, 'TicketOpened', admin_service.ticket_payload(n), 2
        FROM new_tickets n;
    ELSE
        INSERT INTO admin_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT
            'ticket',
            n.id,
            CASE
                WHEN n.status IS DISTINCT FROM o.status THEN CASE n.status
                    WHEN 'resolved' THEN 'TicketResolved'
                    WHEN 'closed' THEN 'TicketClosed'
                    ELSE 'TicketStatusChanged'
                END
                WHEN n.assigned_to IS DISTINCT FROM o.assigned_to AND n.assigned_to IS NOT NULL THEN 'TicketAssigned'
                WHEN n.priority IS DISTINCT FROM o.priority THEN 'TicketPriorityChanged'
                ELSE 'TicketUpdated'
            END,
            admin_service.ticket_payload(n),
            2
        FROM new_tickets n
        JOIN old_tickets o ON o.id = n.id
        -- the payload's own columns; updated_at alone is not a change
        WHERE (n.customer_pseudonym, n.order_id, n.status, n.priority, n.assigned_to, n.created_at, n.resolved_at)
            IS DISTINCT FROM
              (o.customer_pseudonym, o.order_id, o.status, o.priority, o.assigned_to, o.created_at, o.resolved_at);
    END IF;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'admin_service');
    END IF;
    RETURN NULL;
END
$$;

-- As 0025, with schema_version 2; a comment by the ticket's customer names no author (its id is theirs).
CREATE OR REPLACE FUNCTION admin_service.emit_ticket_comment_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    -- the tickets' row locks first (see the top of 0025), in id order like every multi-row writer
    PERFORM 1 FROM admin_service.support_tickets t
    WHERE t.id IN (SELECT c.ticket_id FROM new_comments c)
    ORDER BY t.id
    FOR NO KEY UPDATE;
    INSERT INTO admin_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT
        'ticket',
        t.id,
        'TicketCommented',
        admin_service.ticket_payload(t)
            || jsonb_build_object('comment_author_id', CASE WHEN c.user_id <> t.user_id THEN c.user_id END,
                                  'comment_is_internal', c.is_internal),
        2
    FROM new_comments c
    JOIN admin_service.support_tickets t ON t.id = c.ticket_id
    ORDER BY c.created_at, c.id;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'admin_service');
    END IF;
    RETURN NULL;
END
$$;

-- As 0025, with schema_version 2 (SECURITY DEFINER and search_path repeated: CREATE OR REPLACE resets them).
CREATE OR REPLACE FUNCTION admin_service.emit_ticket_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    emitted integer;
BEGIN
    PERFORM 1 FROM admin_service.support_tickets t WHERE t.id = ANY (ids) ORDER BY t.id FOR SHARE;
    INSERT INTO admin_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'ticket', t.id, 'TicketSnapshot', admin_service.ticket_payload(t), 2
    FROM admin_service.support_tickets t
    WHERE t.id = ANY (ids)
    ORDER BY t.id;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'admin_service');
    END IF;
    RETURN emitted;
END
$$;
