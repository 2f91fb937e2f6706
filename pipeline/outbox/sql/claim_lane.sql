-- One held lane's next rows in position order (per aggregate, commit order), skipping every aggregate parked
-- in the dead-letter table: its later events wait until the parked one is replayed or discarded. An
-- aggregate's lane is a stable hash of its id (the same in every relay: PostgreSQL computes it), so one lane,
-- and one relay at a time, carries all of its events. The lane count and the lane are constants, not parameters:
-- only the same expression with the same constant matches the lane index (migration 0026).
-- NOT IN, not NOT EXISTS: PostgreSQL hashes the dead letters once and filters the ordered index walk, which
-- stops at the LIMIT; as an anti join it chose to read the whole lane and sort it (~400 ms per claim at
-- 120,000 rows against ~30 ms). Both sides' columns are NOT NULL, so NOT IN means the same.
(SELECT *
 FROM {schema}.outbox
 WHERE mod(hashtext(aggregate_id::text) & 2147483647, {lane_count}) = {lane}
   AND (aggregate_type, aggregate_id) NOT IN (SELECT aggregate_type, aggregate_id FROM {schema}.outbox_dead_letter)
 ORDER BY position
 LIMIT %(limit)s)
