-- Per counted order placed in [since, until) (or of `ids`): what its ledger entries must sum to.
SELECT o.id::text,
       1 AS orders,
       (o.status = 'cancelled')::integer AS cancelled,
       CASE WHEN o.status = 'cancelled' THEN 0 ELSE (o.total * 100)::bigint END AS gmv_cents,
       CASE WHEN o.status = 'cancelled' THEN 0 ELSE (o.subtotal * 100)::bigint END AS subtotal_cents,
       CASE WHEN o.status = 'cancelled' THEN 0 ELSE o.item_count END AS items
FROM order_service.orders o
WHERE order_service.is_visible(o)
  AND NOT EXISTS (SELECT 1 FROM order_service.orders_outside_ledger x WHERE x.order_id = o.id)
  AND o.placed_at >= %(since)s AND o.placed_at < %(until)s
  AND (%(cities)s::text[] IS NULL OR o.city = ANY (%(cities)s::text[]))
  AND (%(ids)s::uuid[] IS NULL OR o.id = ANY (%(ids)s::uuid[]))
