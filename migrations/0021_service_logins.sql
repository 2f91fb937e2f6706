-- A login per service and per tool (issue 22; docs/security.md, "Who can read and write what").
--
-- Services: the login `<service>` (named like its schema, so its default search_path finds its tables) reads
-- and writes its own schema's tables and nothing else: no other service schema, no audit table (0022), no
-- DDL (the NOLOGIN `<service>_owner` keeps owning the schema; the login is not a member of it). Its triggers
-- run as the login, so it may INSERT into its outbox (neither read, change nor delete it: the relay does
-- that) and its status history, and never touch its dead letters. No trigger reads another schema today (an
-- order carries a snapshot of its restaurant, a delivery its points); one that must would go through a
-- SECURITY DEFINER function owned by the other schema's owner with a fixed search_path, as the backfill's
-- snapshot functions below do.
--
-- Tools: `nibble_backfill` (snapshots through 0014/0015's functions, its progress table), `nibble_dlq` (the
-- dead letters: list, replay into the outbox, discard), `nibble_verify` (read-only, for checks). The relay
-- keeps 0008's grants. The superuser is for `nibble migrate` and the stack only.
--
-- Roles are cluster-wide: created here only if missing (the local stack and docker-compose.yml create them
-- first, with their passwords; see 0001 for the race this tolerates). Grants are per database.

DO $$
DECLARE
    login text;
BEGIN
    FOREACH login IN ARRAY ARRAY[
        'user_service', 'restaurant_service', 'order_service', 'driver_service', 'admin_service',
        'nibble_backfill', 'nibble_dlq', 'nibble_verify'
    ] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = login) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', login);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- Each service: its schema's tables (and those later migrations create there, made by its owner).
DO $$
DECLARE
    service text;
BEGIN
    FOREACH service IN ARRAY ARRAY[
        'user_service', 'restaurant_service', 'order_service', 'driver_service', 'admin_service'
    ] LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', service, service);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', service, service);
        EXECUTE format(
            'ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I',
            service || '_owner', service, service
        );
    END LOOP;
END
$$;

-- What the triggers write, and no more: an outbox row is inserted (the relay reads and deletes it), a
-- status-history row likewise, and a ledger's outside-list row only deleted (0015).
REVOKE SELECT, UPDATE, DELETE ON order_service.outbox FROM order_service;
REVOKE SELECT, UPDATE, DELETE ON driver_service.outbox FROM driver_service;
REVOKE SELECT, UPDATE, DELETE ON restaurant_service.outbox FROM restaurant_service;
REVOKE ALL ON order_service.outbox_dead_letter FROM order_service;
REVOKE ALL ON driver_service.outbox_dead_letter FROM driver_service;
REVOKE ALL ON restaurant_service.outbox_dead_letter FROM restaurant_service;
REVOKE UPDATE, DELETE ON order_service.order_status_history FROM order_service;
REVOKE INSERT, UPDATE ON order_service.orders_outside_ledger FROM order_service;

-- nibble_backfill. Its chunks lock rows FOR SHARE, which PostgreSQL allows only with UPDATE on a column:
-- updated_at, which no payload carries (an UPDATE of it alone writes no event). The snapshot functions run
-- as their schema's owner, so the backfill never writes an outbox or the ledger's list itself.
GRANT USAGE ON SCHEMA order_service, driver_service, restaurant_service TO nibble_backfill;
GRANT SELECT, UPDATE (updated_at) ON order_service.orders, driver_service.deliveries, driver_service.drivers,
    restaurant_service.restaurants TO nibble_backfill;
GRANT SELECT ON order_service.outbox, driver_service.outbox, restaurant_service.outbox TO nibble_backfill;
GRANT SELECT, INSERT, UPDATE ON public.backfill_progress TO nibble_backfill;

ALTER FUNCTION order_service.emit_order_snapshots(uuid[]) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION driver_service.emit_delivery_snapshots(uuid[])
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION driver_service.emit_driver_snapshots(uuid[]) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION restaurant_service.emit_restaurant_snapshots(uuid[])
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION order_service.emit_order_snapshots(uuid[]), order_service.emit_order_state_snapshots(uuid[]),
    driver_service.emit_delivery_snapshots(uuid[]), driver_service.emit_driver_snapshots(uuid[]),
    restaurant_service.emit_restaurant_snapshots(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION order_service.emit_order_snapshots(uuid[]), driver_service.emit_delivery_snapshots(uuid[]),
    driver_service.emit_driver_snapshots(uuid[]), restaurant_service.emit_restaurant_snapshots(uuid[])
    TO nibble_backfill;

-- nibble_dlq: list, replay (back into the outbox with their position and id) and discard dead letters.
GRANT USAGE ON SCHEMA order_service, driver_service, restaurant_service TO nibble_dlq;
GRANT SELECT, DELETE ON order_service.outbox_dead_letter, driver_service.outbox_dead_letter,
    restaurant_service.outbox_dead_letter TO nibble_dlq;
GRANT INSERT ON order_service.outbox, driver_service.outbox, restaurant_service.outbox TO nibble_dlq;

-- nibble_verify: reads what analytics is compared with, changes nothing (and its sessions are read-only).
GRANT USAGE ON SCHEMA order_service, driver_service, restaurant_service TO nibble_verify;
GRANT SELECT ON ALL TABLES IN SCHEMA order_service, driver_service, restaurant_service TO nibble_verify;
GRANT SELECT ON public.outbox_lanes, public.backfill_progress TO nibble_verify;
-- Per database (a cluster-wide ALTER ROLE would race the same statement of a concurrent migration).
DO $$
BEGIN
    EXECUTE format('ALTER ROLE nibble_verify IN DATABASE %I SET default_transaction_read_only = on',
                   current_database());
END
$$;
