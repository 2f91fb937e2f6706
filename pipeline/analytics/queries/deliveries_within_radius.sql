-- Deliveries whose drop-off point lies within a radius (metres) of a point, nearest first.
-- columns: delivery_id text, city text, status text, dropoff_lat coordinate, dropoff_lon coordinate, metres number
SELECT delivery_id, city, status, dropoff_lat, dropoff_lon,
       ST_DISTANCE(dropoff_point, ST_POINT(%(lon)s, %(lat)s, 1)) AS metres
FROM deliveries
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND ST_DISTANCE(dropoff_point, ST_POINT(%(lon)s, %(lat)s, 1)) < %(radius_m)s
  AND city = %(city)s -- if city
ORDER BY ST_DISTANCE(dropoff_point, ST_POINT(%(lon)s, %(lat)s, 1))
LIMIT %(limit)s
