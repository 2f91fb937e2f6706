-- Dead-lettered events of one outbox, oldest first.
SELECT position, event_id, aggregate_type, aggregate_id, event_type, schema_version, occurred_at, error,
       dead_lettered_at, payload
FROM {schema}.outbox_dead_letter
ORDER BY position
