-- Pinot's restaurants of the given cities (or of `ids`): the compared values, then their origin.
-- columns: restaurant_id text, city text, name text, is_active text, rating number, outbox_position count, event_type text
SELECT restaurant_id, city, name, is_active, rating, outbox_position, event_type
FROM restaurants
WHERE updated_at >= %(since)s
  AND city IN (%(buckets)s) -- if buckets
  AND city IN (%(cities)s) -- if cities
  AND restaurant_id IN (%(ids)s) -- if ids
LIMIT 1000000
