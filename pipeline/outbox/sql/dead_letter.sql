-- Move one poison row to the dead-letter table with its error, keeping its position and event id.
WITH moved AS (
    DELETE FROM {schema}.outbox WHERE position = %(position)s
    RETURNING position, event_id, aggregate_type, aggregate_id, event_type, payload, schema_version, txid,
              occurred_at
)
INSERT INTO {schema}.outbox_dead_letter
    (position, event_id, aggregate_type, aggregate_id, event_type, payload, schema_version, txid, occurred_at,
     error)
SELECT position, event_id, aggregate_type, aggregate_id, event_type, payload, schema_version, txid, occurred_at,
       %(error)s
FROM moved
