-- The next rows of this relay's lanes of one outbox: one claim_lane.sql per held lane, joined by
-- UNION ALL, each in position order. PostgreSQL runs them one after the other and stops once the batch is
-- full, so each lane's rows are read from that lane's own index entries only (migration 0026), never the
-- other relays'. Order only matters within a lane (all of an aggregate's events are in one lane), and the
-- relay rotates which of its lanes comes first from batch to batch, so a lane with a long backlog cannot hold
-- the others back by more than one batch per held lane.
-- The payload comes as text: the codec parses it itself, so a payload it cannot parse is one poison event.
-- Column names are those of store.OutboxRow.
SELECT o.position, o.event_id::text AS event_id, o.aggregate_type, o.aggregate_id::text AS aggregate_id,
       o.event_type, o.payload::text AS payload, o.schema_version, o.txid::text::bigint AS txid, o.occurred_at
FROM ({lanes}) o
LIMIT %(limit)s
