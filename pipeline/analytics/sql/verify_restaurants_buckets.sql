-- Restaurants per city and activity (no time buckets: a small table, compared whole). `since` is the Pinot
-- table's retention cutoff on updated_at.
SELECT city AS bucket, (is_active AND deleted_at IS NULL) AS is_active, count(*) AS restaurants
FROM restaurant_service.restaurants
WHERE updated_at >= %(since)s
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
GROUP BY 1, 2
