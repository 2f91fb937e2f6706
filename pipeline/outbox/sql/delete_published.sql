-- Rows Kafka has acknowledged.
DELETE FROM {schema}.outbox WHERE position = ANY(%(positions)s::bigint[])
