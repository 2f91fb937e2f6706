-- Tickets per 1,000 orders by city and restaurant: tickets opened in the window about an order of the
-- restaurant, per 1,000 of its orders placed in the window (cancelled ones included); tickets about no order
-- are not counted. Orders from the order ledger, tickets from `ticket_events` (all history; each ticket once,
-- whichever of its events are there), joined by the library on city and restaurant.
-- columns: city text, restaurant_id text, orders count, tickets count, tickets_per_1000_orders number
-- window: whole hours
-- join on: city, restaurant_id
-- rate: tickets_per_1000_orders = tickets per 1000 orders
SELECT city, restaurant_id, SUM(orders) AS orders
FROM order_ledger
WHERE placed_hour >= %(since)s AND placed_hour < %(until)s
  AND city = %(city)s -- if city
GROUP BY city, restaurant_id
HAVING orders > 0
LIMIT 100000
UNION ALL
SELECT city, restaurant_id, DISTINCTCOUNT(ticket_id) AS tickets
FROM ticket_events
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND restaurant_id <> 'null'
  AND city = %(city)s -- if city
GROUP BY city, restaurant_id
LIMIT 100000
