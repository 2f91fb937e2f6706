-- Restaurants of the given cities (or of `ids`): the values compared with Pinot's `restaurants` row.
SELECT id::text, city, name, (is_active AND deleted_at IS NULL) AS is_active, rating::double precision AS rating
FROM restaurant_service.restaurants
WHERE updated_at >= %(since)s
  AND (%(buckets)s::text[] IS NULL OR city = ANY (%(buckets)s::text[]))
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
  AND (%(ids)s::uuid[] IS NULL OR id = ANY (%(ids)s::uuid[]))
