-- Aggregates of `ids` with an event still in the outbox or parked in the dead-letter table: in flight, not
-- comparable yet.
SELECT aggregate_id::text FROM {outbox} WHERE aggregate_id = ANY (%(ids)s::uuid[])
UNION
SELECT aggregate_id::text FROM {dead_letter} WHERE aggregate_id = ANY (%(ids)s::uuid[])
