-- As the admin service: the pseudonym cleared from the customer's tickets (each publishes a TicketUpdated
-- without it). Returns the tickets cleared.
WITH cleared AS (
    UPDATE admin_service.support_tickets SET customer_pseudonym = NULL
    WHERE user_id = %(customer)s AND customer_pseudonym IS NOT NULL
    RETURNING id
)
SELECT count(*) FROM cleared
