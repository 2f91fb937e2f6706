-- Visible orders placed in [since, until) (or those of `ids`): the values compared with Pinot's `orders` row.
SELECT id::text,
       city,
       restaurant_id::text,
       status,
       payment_status,
       item_count,
       (subtotal * 100)::bigint AS subtotal_cents,
       (total * 100)::bigint AS total_cents,
       floor(extract(epoch FROM placed_at) * 1000)::bigint AS placed_at
FROM order_service.orders o
WHERE order_service.is_visible(o)
  AND placed_at >= %(since)s AND placed_at < %(until)s
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
  AND (%(ids)s::uuid[] IS NULL OR id = ANY (%(ids)s::uuid[]))
