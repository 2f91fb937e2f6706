-- The lane of one aggregate: the expression of claim_batch.sql (for `nibble relay status` and tests).
SELECT mod(hashtext(%(aggregate_id)s::uuid::text) & 2147483647, %(lane_count)s)
