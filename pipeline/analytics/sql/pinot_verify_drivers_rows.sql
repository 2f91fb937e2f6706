-- Pinot's drivers of the given cities (or of `ids`): the compared values, then their origin.
-- columns: driver_id text, city text, vehicle_type text, status text, is_active text, outbox_position count, event_type text
SELECT driver_id, city, vehicle_type, status, is_active, outbox_position, event_type
FROM drivers
WHERE updated_at >= %(since)s
  AND city IN (%(buckets)s) -- if buckets
  AND city IN (%(cities)s) -- if cities
  AND driver_id IN (%(ids)s) -- if ids
LIMIT 1000000
