-- As the order service: the customer's pseudonym link deleted, then its copies on their orders cleared (each
-- visible order publishes an OrderUpdated without it). Returns the link's rows deleted and the orders cleared.
WITH link AS (
    DELETE FROM order_service.customer_pseudonyms WHERE user_id = %(customer)s RETURNING pseudonym
), cleared AS (
    UPDATE order_service.orders SET customer_pseudonym = NULL
    WHERE user_id = %(customer)s AND customer_pseudonym IS NOT NULL
    RETURNING id
)
SELECT (SELECT count(*) FROM link), (SELECT count(*) FROM cleared)
