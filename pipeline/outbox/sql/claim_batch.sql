-- The next rows of this relay's lanes of one outbox, in position order (per aggregate, commit order),
-- skipping every aggregate parked in the dead-letter table: its later events wait until the parked one is
-- replayed or discarded. An aggregate's lane is a stable hash of its id (the same in every relay: PostgreSQL
-- computes it), so one lane, and one relay at a time, carries all of its events.
-- The payload comes as text: the codec parses it itself, so a payload it cannot parse is one poison event.
-- Column names are those of store.OutboxRow.
SELECT o.position, o.event_id::text AS event_id, o.aggregate_type, o.aggregate_id::text AS aggregate_id,
       o.event_type, o.payload::text AS payload, o.schema_version, o.txid::text::bigint AS txid, o.occurred_at
FROM {schema}.outbox o
WHERE mod(hashtext(o.aggregate_id::text) & 2147483647, %(lane_count)s) = ANY(%(lanes)s::int[])
  AND NOT EXISTS (
    SELECT 1 FROM {schema}.outbox_dead_letter d
    WHERE d.aggregate_type = o.aggregate_type AND d.aggregate_id = o.aggregate_id
)
ORDER BY o.position
LIMIT %(limit)s
