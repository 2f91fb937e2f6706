-- The transactional outbox of each emitting service (columns as docs/events.md), its dead-letter table,
-- and the relay's grants: nibble_relay reads and deletes outbox rows, moves poison rows to the
-- dead-letter table, and can touch nothing else.

SET LOCAL ROLE order_service_owner;

CREATE TABLE order_service.outbox (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    schema_version integer NOT NULL,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);  -- a queue: vacuum often

-- Rows keep the position and event id they had in the outbox.
CREATE TABLE order_service.outbox_dead_letter (
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
CREATE INDEX outbox_dead_letter_aggregate_idx ON order_service.outbox_dead_letter (aggregate_type, aggregate_id);

GRANT USAGE ON SCHEMA order_service TO nibble_relay;
GRANT SELECT, DELETE ON order_service.outbox TO nibble_relay;
GRANT SELECT, INSERT, DELETE ON order_service.outbox_dead_letter TO nibble_relay;

SET LOCAL ROLE driver_service_owner;

CREATE TABLE driver_service.outbox (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    schema_version integer NOT NULL,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);  -- a queue: vacuum often

-- Rows keep the position and event id they had in the outbox.
CREATE TABLE driver_service.outbox_dead_letter (
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
CREATE INDEX outbox_dead_letter_aggregate_idx ON driver_service.outbox_dead_letter (aggregate_type, aggregate_id);

GRANT USAGE ON SCHEMA driver_service TO nibble_relay;
GRANT SELECT, DELETE ON driver_service.outbox TO nibble_relay;
GRANT SELECT, INSERT, DELETE ON driver_service.outbox_dead_letter TO nibble_relay;

SET LOCAL ROLE restaurant_service_owner;

CREATE TABLE restaurant_service.outbox (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    schema_version integer NOT NULL,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);  -- a queue: vacuum often

-- Rows keep the position and event id they had in the outbox.
CREATE TABLE restaurant_service.outbox_dead_letter (
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
CREATE INDEX outbox_dead_letter_aggregate_idx ON restaurant_service.outbox_dead_letter (aggregate_type, aggregate_id);

GRANT USAGE ON SCHEMA restaurant_service TO nibble_relay;
GRANT SELECT, DELETE ON restaurant_service.outbox TO nibble_relay;
GRANT SELECT, INSERT, DELETE ON restaurant_service.outbox_dead_letter TO nibble_relay;
