-- Audit with user context (issue 22; docs/security.md, "Audit"): who changed what, for the critical changes:
-- order, payment (refunds included), support-ticket and driver status; dead letters replayed or discarded;
-- backfill runs started and finished, and Pinot rebuilds.
--
-- The actor is whoever the writer names for its transaction (`SET LOCAL nibble.actor = 'user:…'`, or the
-- `nibble` command's NIBBLE_ACTOR / OS user), else the login (`order_service`, `nibble_dlq`, …); the login is
-- kept beside it. order_status_history.changed_by (0005) names the same actor instead of the role.
--
-- audit.changes belongs to its own NOLOGIN owner, and no one else has any privilege on it: rows arrive only
-- through the SECURITY DEFINER functions below (triggers, and audit.record_rebuild for `nibble pinot
-- rebuild`), each with a fixed search_path. It is append-only for everyone: UPDATE, DELETE and TRUNCATE are
-- revoked from the owner too, and triggers refuse them even to the superuser (who would have to drop them).
--
-- A new row's status is recorded by a statement-level trigger over its transition table (one call per
-- INSERT, however many rows; the orders' and payments' are already kept by 0005's triggers); a status change
-- by a row-level `AFTER UPDATE OF status ... WHEN (status changed)` trigger, so the many updates that leave
-- the status alone (an order's totals and payment status, a driver's location) call no function at all.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'nibble_audit_owner') THEN
        BEGIN
            CREATE ROLE nibble_audit_owner NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

CREATE SCHEMA audit AUTHORIZATION nibble_audit_owner;

-- Telling a replay from a discard: a replayed dead letter is back in its outbox, with its event id.
GRANT USAGE ON SCHEMA order_service, driver_service, restaurant_service TO nibble_audit_owner;
GRANT SELECT (event_id) ON order_service.outbox, driver_service.outbox, restaurant_service.outbox
    TO nibble_audit_owner;

SET LOCAL ROLE nibble_audit_owner;

CREATE TABLE audit.changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor text NOT NULL,         -- nibble.actor, else the login
    login name NOT NULL DEFAULT session_user,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    subject text NOT NULL,       -- order, payment, ticket, driver, dead_letter, backfill, rebuild
    subject_id text NOT NULL,    -- the row's id; a dead letter's event id; a backfilled or rebuilt table
    action text NOT NULL,        -- status, replay, discard, started, finished
    old_value text,              -- the status before (NULL for a new row)
    new_value text,
    detail jsonb
);
CREATE INDEX changes_subject_idx ON audit.changes (subject, subject_id);

REVOKE ALL ON audit.changes FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit.changes FROM nibble_audit_owner;

CREATE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.%: % refused: the audit trail is append-only', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER changes_append_only BEFORE UPDATE OR DELETE ON audit.changes
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER changes_no_truncate BEFORE TRUNCATE ON audit.changes
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

CREATE FUNCTION audit.actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('nibble.actor', true), ''), session_user)
$$;

-- New rows' statuses; TG_ARGV[0] names the subject. Every audited table has `id` and `status`; PL/pgSQL
-- compiles the function once per table it is a trigger of.
CREATE FUNCTION audit.record_new_status() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO audit.changes (actor, subject, subject_id, action, new_value)
    SELECT audit.actor(), TG_ARGV[0], n.id::text, 'status', n.status FROM new_rows n;
    RETURN NULL;
END
$$;

-- One row's status changing (the trigger's WHEN clause lets through only those).
CREATE FUNCTION audit.record_status_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO audit.changes (actor, subject, subject_id, action, old_value, new_value)
    VALUES (audit.actor(), TG_ARGV[0], NEW.id::text, 'status', OLD.status, NEW.status);
    RETURN NULL;
END
$$;

-- Dead letters leaving their table: replayed (back in the outbox) or discarded. Only `nibble dlq` deletes them.
CREATE FUNCTION audit.record_dead_letters() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO audit.changes (actor, subject, subject_id, action, detail) '
        'SELECT audit.actor(), ''dead_letter'', d.event_id::text, '
        '       CASE WHEN EXISTS (SELECT FROM %I.outbox o WHERE o.event_id = d.event_id) '
        '            THEN ''replay'' ELSE ''discard'' END, '
        '       jsonb_build_object(''outbox'', %L, ''position'', d.position, ''aggregate_type'', d.aggregate_type, '
        '                          ''aggregate_id'', d.aggregate_id, ''event_type'', d.event_type, ''error'', d.error) '
        'FROM old_rows d',
        TG_TABLE_SCHEMA, TG_TABLE_SCHEMA
    );
    RETURN NULL;
END
$$;

-- A backfill of one table starting (first run or --restart) or finishing (public.backfill_progress, 0014).
CREATE FUNCTION audit.record_backfill() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.started_at IS DISTINCT FROM OLD.started_at THEN
        INSERT INTO audit.changes (actor, subject, subject_id, action, detail)
        VALUES (audit.actor(), 'backfill', NEW.table_name, 'started', jsonb_build_object('since', NEW.since));
    END IF;
    IF NEW.finished_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.finished_at IS NULL) THEN
        INSERT INTO audit.changes (actor, subject, subject_id, action, detail)
        VALUES (audit.actor(), 'backfill', NEW.table_name, 'finished',
                jsonb_build_object('since', NEW.since, 'rows', NEW.rows_done, 'events', NEW.events));
    END IF;
    RETURN NULL;
END
$$;

-- `nibble pinot rebuild TABLE` writes nothing else to PostgreSQL: it records its run here (as nibble_backfill,
-- the role its refill runs as).
CREATE FUNCTION audit.record_rebuild(pinot_table text, source text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO audit.changes (actor, subject, subject_id, action, detail)
    VALUES (audit.actor(), 'rebuild', pinot_table, 'started', jsonb_build_object('source', source))
$$;
REVOKE EXECUTE ON FUNCTION audit.record_rebuild(text, text) FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO nibble_backfill;
GRANT EXECUTE ON FUNCTION audit.record_rebuild(text, text) TO nibble_backfill;

RESET ROLE;

-- The triggers, as the migrating superuser: the tables' owners have no USAGE on schema audit.
CREATE TRIGGER orders_audit_insert AFTER INSERT ON order_service.orders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_new_status('order');
CREATE TRIGGER orders_audit_update AFTER UPDATE OF status ON order_service.orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION audit.record_status_change('order');
CREATE TRIGGER payments_audit_insert AFTER INSERT ON order_service.payments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_new_status('payment');
CREATE TRIGGER payments_audit_update AFTER UPDATE OF status ON order_service.payments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION audit.record_status_change('payment');
CREATE TRIGGER outbox_dead_letter_audit AFTER DELETE ON order_service.outbox_dead_letter
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_dead_letters();

-- A status-history row names the actor too (the column is `name`: an actor is cut at 63 bytes there, never
-- in audit.changes).
ALTER TABLE order_service.order_status_history
    ALTER COLUMN changed_by SET DEFAULT left(coalesce(nullif(current_setting('nibble.actor', true), ''), session_user), 63);

CREATE TRIGGER drivers_audit_insert AFTER INSERT ON driver_service.drivers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_new_status('driver');
CREATE TRIGGER drivers_audit_update AFTER UPDATE OF status ON driver_service.drivers
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION audit.record_status_change('driver');
CREATE TRIGGER outbox_dead_letter_audit AFTER DELETE ON driver_service.outbox_dead_letter
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_dead_letters();

CREATE TRIGGER outbox_dead_letter_audit AFTER DELETE ON restaurant_service.outbox_dead_letter
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_dead_letters();

CREATE TRIGGER support_tickets_audit_insert AFTER INSERT ON admin_service.support_tickets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit.record_new_status('ticket');
CREATE TRIGGER support_tickets_audit_update AFTER UPDATE OF status ON admin_service.support_tickets
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION audit.record_status_change('ticket');

-- backfill_progress (0014) belongs to the migrating superuser, like the other public tables.
CREATE TRIGGER backfill_progress_audit AFTER INSERT OR UPDATE ON public.backfill_progress
    FOR EACH ROW EXECUTE FUNCTION audit.record_backfill();
