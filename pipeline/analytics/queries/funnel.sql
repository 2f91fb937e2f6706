-- The order funnel for orders placed in the window: how many were placed, confirmed, picked up and delivered
-- (one row per stage, from the de-duplicated event history, so each step counts once per order).
-- columns: stage text, orders count
-- window: whole hours
SELECT status AS stage, COUNT(*) AS orders
FROM order_events
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND status IN ('placed', 'confirmed', 'picked_up', 'delivered')
  AND event_type IN ('OrderPlaced', 'OrderStatusChanged')
  AND city = %(city)s -- if city
GROUP BY status
LIMIT 10
