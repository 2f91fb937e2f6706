-- One order as PostgreSQL holds it, with whether the ledger counted it, and its delivery (if any).
SELECT o.id::text AS order_id, o.status, o.item_count, (o.subtotal * 100)::bigint AS subtotal_cents,
       (o.total * 100)::bigint AS total_cents, o.currency, o.payment_status, o.city, o.restaurant_name,
       o.placed_at, o.updated_at, order_service.is_visible(o) AS visible,
       NOT EXISTS (SELECT 1 FROM order_service.orders_outside_ledger x WHERE x.order_id = o.id) AS counted,
       d.id::text AS delivery_id, d.status AS delivery_status, d.driver_id::text AS driver_id
FROM order_service.orders o
LEFT JOIN driver_service.deliveries d ON d.order_id = o.id
WHERE o.id = %(order_id)s::uuid
