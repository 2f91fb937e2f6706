-- What the order ledger must sum to per bucket of placed_at (grain_ms): each order it has counted (visible,
-- not listed in orders_outside_ledger) once, its GMV, subtotal and items while it is not cancelled.
SELECT (floor(extract(epoch FROM o.placed_at) * 1000 / %(grain_ms)s) * %(grain_ms)s)::bigint AS bucket,
       count(*) AS orders,
       count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled,
       coalesce(sum((o.total * 100)::bigint) FILTER (WHERE o.status <> 'cancelled'), 0) AS gmv_cents,
       coalesce(sum((o.subtotal * 100)::bigint) FILTER (WHERE o.status <> 'cancelled'), 0) AS subtotal_cents,
       coalesce(sum(o.item_count) FILTER (WHERE o.status <> 'cancelled'), 0) AS items
FROM order_service.orders o
WHERE order_service.is_visible(o)
  AND NOT EXISTS (SELECT 1 FROM order_service.orders_outside_ledger x WHERE x.order_id = o.id)
  AND o.placed_at >= %(since)s AND o.placed_at < %(until)s
  AND (%(cities)s::text[] IS NULL OR o.city = ANY (%(cities)s::text[]))
GROUP BY 1
