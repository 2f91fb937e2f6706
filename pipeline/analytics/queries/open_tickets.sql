-- Open tickets right now by priority and age: tickets neither resolved nor closed, counted by how long ago they
-- were opened (under 1 h, 1-4 h, 4-24 h, over 24 h), with the oldest opening of each group, youngest group first.
-- From `support_tickets`, each ticket's current state (it holds the realtime window; docs/pinot.md).
-- columns: priority text, age text, tickets count, oldest_created_at time
SELECT priority,
       CASE WHEN now() - created_at < 3600000 THEN 'under 1 h'
            WHEN now() - created_at < 14400000 THEN '1-4 h'
            WHEN now() - created_at < 86400000 THEN '4-24 h'
            ELSE 'over 24 h' END AS age,
       COUNT(*) AS tickets, MIN(created_at) AS oldest_created_at
FROM support_tickets
WHERE status IN ('open', 'in_progress')
  AND city = %(city)s -- if city
GROUP BY priority, age
ORDER BY priority, MAX(created_at) DESC
LIMIT 1000
