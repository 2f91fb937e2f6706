-- Deliveries per bucket of created_at (grain_ms) and status: how many, with a driver, delivered.
SELECT (floor(extract(epoch FROM created_at) * 1000 / %(grain_ms)s) * %(grain_ms)s)::bigint AS bucket,
       status,
       count(*) AS deliveries,
       count(driver_id) AS with_driver,
       count(delivered_at) AS delivered
FROM driver_service.deliveries
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
GROUP BY 1, 2
