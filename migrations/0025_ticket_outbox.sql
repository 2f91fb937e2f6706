-- Support tickets to analytics (issue 20): admin_service gets an outbox like 0008's, and statement-level
-- triggers on support_tickets and ticket_comments write the ticket's state after each change (payload keys:
-- avro_schemas/tickets/v1.avsc, aggregate type `ticket`). A comment's text stays here: its event carries who
-- wrote it and whether it is internal.
--
-- Per-ticket order. Every event is written while its statement holds the ticket row's lock: an UPDATE of the
-- ticket holds it; a comment's INSERT only takes the foreign key's KEY SHARE lock, so its trigger first locks
-- the tickets FOR NO KEY UPDATE, waiting for any other writer of them to commit, and only then reads their
-- state (its next statement, a new snapshot in READ COMMITTED) and draws its position. So per ticket
-- `position` order == commit order, and each event counts every comment committed before it.
--
-- Derived fields: restaurant_id and city from the ticket's order (read through ticket_order(), below);
-- first_response_at: the first comment, not internal, by someone other than the ticket's user; closed_at: the
-- seed's table has none, so while a ticket is closed its updated_at (a closed ticket is not edited).

SET LOCAL ROLE admin_service_owner;

CREATE TABLE admin_service.outbox (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    schema_version integer NOT NULL,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_cost_delay = 0);  -- a queue: vacuum often, unthrottled (0017)

-- Rows keep the position and event id they had in the outbox.
CREATE TABLE admin_service.outbox_dead_letter (
    position bigint PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    schema_version integer NOT NULL,
    txid xid8 NOT NULL,
    occurred_at timestamptz NOT NULL,
    error text NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);
-- The relay asks "is this aggregate parked?" for every aggregate it publishes.
CREATE INDEX outbox_dead_letter_aggregate_idx ON admin_service.outbox_dead_letter (aggregate_type, aggregate_id);

GRANT USAGE ON SCHEMA admin_service TO nibble_relay;
GRANT SELECT, DELETE ON admin_service.outbox TO nibble_relay;
GRANT SELECT, INSERT, DELETE ON admin_service.outbox_dead_letter TO nibble_relay;

-- The order's restaurant and city: the one read of another service's schema, through the admin owner's
-- column grant, so a writer of tickets needs no access to order_service itself.
RESET ROLE;
GRANT USAGE ON SCHEMA order_service TO admin_service_owner;
GRANT SELECT (id, restaurant_id, city) ON order_service.orders TO admin_service_owner;
SET LOCAL ROLE admin_service_owner;

CREATE FUNCTION admin_service.ticket_order(order_id uuid, OUT restaurant_id uuid, OUT city text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.restaurant_id, o.city FROM order_service.orders o WHERE o.id = order_id
$$;

CREATE FUNCTION admin_service.ticket_payload(t admin_service.support_tickets) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'ticket_id', t.id,
        'user_id', t.user_id,
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

CREATE FUNCTION admin_service.emit_ticket_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO admin_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
        SELECT 'ticket', n.id, 'TicketOpened', admin_service.ticket_payload(n), 1
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
            1
        FROM new_tickets n
        JOIN old_tickets o ON o.id = n.id
        -- the payload's own columns; updated_at alone is not a change
        WHERE (n.user_id, n.order_id, n.status, n.priority, n.assigned_to, n.created_at, n.resolved_at)
            IS DISTINCT FROM (o.user_id, o.order_id, o.status, o.priority, o.assigned_to, o.created_at, o.resolved_at);
    END IF;
    GET DIAGNOSTICS emitted = ROW_COUNT;
    IF emitted > 0 THEN
        PERFORM pg_notify('nibble_outbox', 'admin_service');
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION admin_service.emit_ticket_comment_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emitted bigint;
BEGIN
    -- the tickets' row locks first (see the top of this file), in id order like every multi-row writer
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
            || jsonb_build_object('comment_author_id', c.user_id, 'comment_is_internal', c.is_internal),
        1
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

CREATE TRIGGER support_tickets_outbox_insert AFTER INSERT ON admin_service.support_tickets
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION admin_service.emit_ticket_events();
CREATE TRIGGER support_tickets_outbox_update AFTER UPDATE ON admin_service.support_tickets
    REFERENCING OLD TABLE AS old_tickets NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION admin_service.emit_ticket_events();
CREATE TRIGGER ticket_comments_outbox_insert AFTER INSERT ON admin_service.ticket_comments
    REFERENCING NEW TABLE AS new_comments
    FOR EACH STATEMENT EXECUTE FUNCTION admin_service.emit_ticket_comment_events();

-- Published tickets are never deleted or re-keyed (0012's rule): analytics could not forget them.
CREATE TRIGGER support_tickets_refuse_delete BEFORE DELETE ON admin_service.support_tickets
    FOR EACH ROW EXECUTE FUNCTION public.refuse_unpublishable_change('ticket', 'close the ticket instead');
CREATE TRIGGER support_tickets_refuse_new_id BEFORE UPDATE OF id ON admin_service.support_tickets
    FOR EACH ROW WHEN (OLD.id <> NEW.id)
    EXECUTE FUNCTION public.refuse_unpublishable_change('ticket', 'a ticket keeps its id');

-- Backfill (0014): one TicketSnapshot per ticket. The rows are locked first, in a statement of their own, so
-- that the snapshot's own statement reads them, and their comments, after every writer it waited for.
CREATE FUNCTION admin_service.emit_ticket_snapshots(ids uuid[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    emitted integer;
BEGIN
    PERFORM 1 FROM admin_service.support_tickets t WHERE t.id = ANY (ids) ORDER BY t.id FOR SHARE;
    INSERT INTO admin_service.outbox (aggregate_type, aggregate_id, event_type, payload, schema_version)
    SELECT 'ticket', t.id, 'TicketSnapshot', admin_service.ticket_payload(t), 1
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
REVOKE EXECUTE ON FUNCTION admin_service.emit_ticket_snapshots(uuid[]) FROM PUBLIC;

RESET ROLE;

ALTER TABLE public.backfill_progress DROP CONSTRAINT backfill_progress_table_name_check;
ALTER TABLE public.backfill_progress ADD CONSTRAINT backfill_progress_table_name_check
    CHECK (table_name IN ('orders', 'deliveries', 'restaurants', 'drivers', 'support_tickets'));

INSERT INTO public.outbox_lanes (outbox, lane_count) VALUES ('admin_service', 8);

-- 0021's logins, as for the other outboxes: admin_service's triggers only insert into its outbox (0021's
-- default privileges gave the login all of it), the backfill snapshots tickets, the dead-letter operator
-- and verify get their part.
REVOKE SELECT, UPDATE, DELETE ON admin_service.outbox FROM admin_service;
REVOKE ALL ON admin_service.outbox_dead_letter FROM admin_service;
GRANT USAGE ON SCHEMA admin_service TO nibble_backfill, nibble_dlq, nibble_verify;
GRANT SELECT, UPDATE (updated_at) ON admin_service.support_tickets TO nibble_backfill;
GRANT SELECT ON admin_service.outbox TO nibble_backfill;
GRANT EXECUTE ON FUNCTION admin_service.emit_ticket_snapshots(uuid[]) TO nibble_backfill;
GRANT SELECT, DELETE ON admin_service.outbox_dead_letter TO nibble_dlq;
GRANT INSERT ON admin_service.outbox TO nibble_dlq;
GRANT SELECT ON ALL TABLES IN SCHEMA admin_service TO nibble_verify;
