-- First-response and resolution time p50/p90 by priority, in minutes from the ticket's opening, over the tickets
-- resolved in the window: `first_response` until the first comment the customer saw from someone else (not an
-- internal note, not their own), `resolution` until it was resolved; a ticket resolved unanswered counts in
-- `resolution` only. From each ticket's TicketResolved event in `ticket_events` (all history since the
-- pipeline was installed; docs/pinot.md), in two parts: Pinot 0.11 has no filtered aggregation with GROUP BY.
-- columns: priority text, measure text, tickets count, p50_minutes number, p90_minutes number
-- order by: priority, measure
SELECT priority, 'first_response' AS measure, COUNT(*) AS tickets,
       PERCENTILE(first_response_at - created_at, 50) / 60000 AS p50_minutes,
       PERCENTILE(first_response_at - created_at, 90) / 60000 AS p90_minutes
FROM ticket_events
WHERE event_type = 'TicketResolved' AND resolved_at >= %(since)s AND resolved_at < %(until)s
  AND first_response_at >= created_at
  AND city = %(city)s -- if city
GROUP BY priority
LIMIT 100
UNION ALL
SELECT priority, 'resolution' AS measure, COUNT(*) AS tickets,
       PERCENTILE(resolved_at - created_at, 50) / 60000 AS p50_minutes,
       PERCENTILE(resolved_at - created_at, 90) / 60000 AS p90_minutes
FROM ticket_events
WHERE event_type = 'TicketResolved' AND resolved_at >= %(since)s AND resolved_at < %(until)s
  AND city = %(city)s -- if city
GROUP BY priority
LIMIT 100
