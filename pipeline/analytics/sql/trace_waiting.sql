-- Events of the order (and of its delivery) not published yet: still in an outbox, or parked as dead letters.
SELECT position, event_id::text, aggregate_type, event_type, txid::text::bigint, occurred_at, 'outbox' AS state, NULL AS error
FROM order_service.outbox WHERE aggregate_id = %(order_id)s::uuid
UNION ALL
SELECT position, event_id::text, aggregate_type, event_type, txid::text::bigint, occurred_at, 'dead letter', error
FROM order_service.outbox_dead_letter WHERE aggregate_id = %(order_id)s::uuid
UNION ALL
SELECT position, event_id::text, aggregate_type, event_type, txid::text::bigint, occurred_at, 'outbox', NULL
FROM driver_service.outbox WHERE aggregate_id = %(delivery_id)s::uuid
UNION ALL
SELECT position, event_id::text, aggregate_type, event_type, txid::text::bigint, occurred_at, 'dead letter', error
FROM driver_service.outbox_dead_letter WHERE aggregate_id = %(delivery_id)s::uuid
ORDER BY occurred_at, position
