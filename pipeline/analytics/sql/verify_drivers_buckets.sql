-- Drivers per city, status and activity (no time buckets: a small table, compared whole). `since` is the
-- Pinot table's retention cutoff on updated_at.
SELECT city AS bucket, status, (is_active AND deleted_at IS NULL) AS is_active, count(*) AS drivers
FROM driver_service.drivers
WHERE updated_at >= %(since)s
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
GROUP BY 1, 2, 3
