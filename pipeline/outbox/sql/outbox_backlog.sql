-- Backlog of one outbox: unpublished rows, age of the oldest, and dead-lettered rows.
SELECT
    (SELECT count(*) FROM {schema}.outbox),
    (SELECT coalesce(extract(epoch FROM clock_timestamp() - min(occurred_at)), 0) FROM {schema}.outbox),
    (SELECT count(*) FROM {schema}.outbox_dead_letter)
