-- The rows analytics sees, per table: what Pinot's state tables hold once every event is in.
SELECT 'orders', count(*) FILTER (WHERE announced OR item_count > 0) FROM order_service.orders
UNION ALL
SELECT 'deliveries', count(*) FROM driver_service.deliveries
UNION ALL
SELECT 'restaurants', count(*) FROM restaurant_service.restaurants
UNION ALL
SELECT 'drivers', count(*) FROM driver_service.drivers
