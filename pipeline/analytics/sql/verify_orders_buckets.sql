-- Visible orders per bucket of placed_at (grain_ms), status and payment status: their count and sums, as
-- Pinot's `orders` table holds them. NULL payment status as Pinot's "null".
SELECT (floor(extract(epoch FROM placed_at) * 1000 / %(grain_ms)s) * %(grain_ms)s)::bigint AS bucket,
       status,
       coalesce(payment_status, 'null') AS payment_status,
       count(*) AS orders,
       sum((total * 100)::bigint) AS total_cents,
       sum((subtotal * 100)::bigint) AS subtotal_cents,
       sum(item_count) AS items
FROM order_service.orders o
WHERE order_service.is_visible(o)
  AND placed_at >= %(since)s AND placed_at < %(until)s
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
GROUP BY 1, 2, 3
