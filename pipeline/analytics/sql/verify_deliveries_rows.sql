-- Deliveries created in [since, until) (or those of `ids`): the values compared with Pinot's `deliveries` row.
SELECT id::text,
       city,
       order_id::text,
       driver_id::text,
       status,
       floor(extract(epoch FROM created_at) * 1000)::bigint AS created_at,
       floor(extract(epoch FROM promised_at) * 1000)::bigint AS promised_at,
       floor(extract(epoch FROM delivered_at) * 1000)::bigint AS delivered_at
FROM driver_service.deliveries
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
  AND (%(ids)s::uuid[] IS NULL OR id = ANY (%(ids)s::uuid[]))
