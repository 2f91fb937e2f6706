-- Oldest unanswered tickets: tickets neither resolved nor closed that nobody has answered yet (no comment the
-- customer saw from someone else), oldest first, with how many comments (notes, the customer's own) they hold.
-- From `support_tickets`, each ticket's current state; an unanswered ticket's first_response_at holds Pinot's
-- null, below any time.
-- columns: ticket_id text, priority text, status text, city text, assigned_to text, created_at time, comments count
SELECT ticket_id, priority, status, city, assigned_to, created_at, comment_count AS comments
FROM support_tickets
WHERE status IN ('open', 'in_progress') AND first_response_at < created_at
  AND city = %(city)s -- if city
ORDER BY created_at, ticket_id
LIMIT %(limit)s
