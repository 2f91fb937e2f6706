-- The next rows of one outbox in position order (per aggregate, commit order), skipping every aggregate
-- parked in the dead-letter table: its later events wait until the parked one is replayed or discarded.
-- The payload comes as text: the relay parses it itself, so a payload it cannot parse is one poison event.
SELECT o.position, o.event_id::text, o.aggregate_type, o.aggregate_id::text, o.event_type, o.payload::text,
       o.schema_version, o.txid::text::bigint, o.occurred_at
FROM {schema}.outbox o
WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.outbox_dead_letter d
    WHERE d.aggregate_type = o.aggregate_type AND d.aggregate_id = o.aggregate_id
)
ORDER BY o.position
LIMIT %(limit)s
