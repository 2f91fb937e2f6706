-- The order funnel for orders placed in the window: how many were placed, confirmed, picked up and delivered
-- (from the de-duplicated event history, so each step counts once per order).
SELECT SUM(CASE WHEN event_type = 'OrderPlaced' THEN 1 ELSE 0 END) AS placed,
       SUM(CASE WHEN event_type = 'OrderStatusChanged' AND status = 'confirmed' THEN 1 ELSE 0 END) AS confirmed,
       SUM(CASE WHEN event_type = 'OrderStatusChanged' AND status = 'picked_up' THEN 1 ELSE 0 END) AS picked_up,
       SUM(CASE WHEN event_type = 'OrderStatusChanged' AND status = 'delivered' THEN 1 ELSE 0 END) AS delivered
FROM order_events
WHERE placed_at >= %(since)s AND placed_at < %(until)s
  AND city = %(city)s -- if city
LIMIT 1
