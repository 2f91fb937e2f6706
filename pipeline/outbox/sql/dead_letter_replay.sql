-- Move dead-lettered events back into the outbox, keeping position and event id, so the parked
-- aggregate's events are published in their original order.
WITH moved AS (
    DELETE FROM {schema}.outbox_dead_letter WHERE {where}
    RETURNING position, event_id, aggregate_type, aggregate_id, event_type, payload, schema_version, txid,
              occurred_at
)
INSERT INTO {schema}.outbox
    (position, event_id, aggregate_type, aggregate_id, event_type, payload, schema_version, txid, occurred_at)
OVERRIDING SYSTEM VALUE
SELECT position, event_id, aggregate_type, aggregate_id, event_type, payload, schema_version, txid, occurred_at
FROM moved
