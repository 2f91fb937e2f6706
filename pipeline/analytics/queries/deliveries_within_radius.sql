-- Deliveries whose drop-off point lies within a radius (metres) of a point, nearest first.
-- Deliveries created within the window are read from `deliveries` (it holds every one created since the window's
-- start; H3 index), older ones, closed by then, from `delivery_events` (all history; docs/pinot.md): each once,
-- whichever of its events (closing, later, snapshot) carry the status.
-- columns: delivery_id text, city text, status text, dropoff_lat coordinate, dropoff_lon coordinate, metres number
-- order by: metres
SELECT delivery_id, city, status, dropoff_lat, dropoff_lon,
       ST_DISTANCE(dropoff_point, ST_POINT(%(lon)s, %(lat)s, 1)) AS metres
FROM deliveries
WHERE created_at >= %(since)s AND created_at >= %(window_start)s AND created_at < %(until)s
  AND ST_DISTANCE(dropoff_point, ST_POINT(%(lon)s, %(lat)s, 1)) < %(radius_m)s
  AND city = %(city)s -- if city
ORDER BY ST_DISTANCE(dropoff_point, ST_POINT(%(lon)s, %(lat)s, 1))
LIMIT %(limit)s
UNION ALL
SELECT DISTINCT delivery_id, city, status, dropoff_lat, dropoff_lon,
       ST_DISTANCE(ST_POINT(dropoff_lon, dropoff_lat, 1), ST_POINT(%(lon)s, %(lat)s, 1)) AS metres
FROM delivery_events
WHERE created_at >= %(since)s AND created_at < %(window_start)s AND created_at < %(until)s
  AND status IN ('delivered', 'cancelled')
  AND ST_DISTANCE(ST_POINT(dropoff_lon, dropoff_lat, 1), ST_POINT(%(lon)s, %(lat)s, 1)) < %(radius_m)s
  AND city = %(city)s -- if city
ORDER BY ST_DISTANCE(ST_POINT(dropoff_lon, dropoff_lat, 1), ST_POINT(%(lon)s, %(lat)s, 1))
LIMIT %(limit)s
