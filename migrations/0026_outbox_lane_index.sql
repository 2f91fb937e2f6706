-- A claim that reads only its own lanes' rows (docs/relay.md, "Where the time goes"). Until now every claim
-- walked the position index from the head and filtered by lane, so with two relays each one read the other's
-- rows (and their dead index entries) too. Here each outbox gets an index leading with the lane expression
-- of its current lane count, then position: a relay claims each held lane with one ordered walk of that
-- lane's entries (claim_lane.sql). The expression is claim_lane.sql's and lane_of.sql's, with the count as
-- a constant (the planner matches an index expression only to the same constant), so the index is rebuilt
-- for the new count by the fenced lane-count switch (`nibble relay lanes --set`, in the fence's transaction).
-- One lane needs none: every row is its lane's, and the position index serves the claim.

CREATE FUNCTION public.outbox_lane_index(outbox name, lane_count integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    EXECUTE format('DROP INDEX IF EXISTS %I.outbox_lane_position_idx', outbox);
    IF lane_count > 1 THEN
        EXECUTE format(
            'CREATE INDEX outbox_lane_position_idx ON %I.outbox '
            '((mod(hashtext(aggregate_id::text) & 2147483647, %s)), position)',
            outbox, lane_count
        );
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION public.outbox_lane_index(name, integer) FROM PUBLIC;

SELECT public.outbox_lane_index(outbox, lane_count)
FROM public.outbox_lanes
WHERE to_regclass(format('%I.outbox', outbox)) IS NOT NULL;
