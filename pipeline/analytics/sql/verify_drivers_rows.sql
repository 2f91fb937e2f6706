-- Drivers of the given cities (or of `ids`): the values compared with Pinot's `drivers` row.
SELECT id::text, city, vehicle_type, status, (is_active AND deleted_at IS NULL) AS is_active
FROM driver_service.drivers
WHERE updated_at >= %(since)s
  AND (%(buckets)s::text[] IS NULL OR city = ANY (%(buckets)s::text[]))
  AND (%(cities)s::text[] IS NULL OR city = ANY (%(cities)s::text[]))
  AND (%(ids)s::uuid[] IS NULL OR id = ANY (%(ids)s::uuid[]))
