-- Relay lanes (docs/relay.md): each outbox is split into lanes by a stable hash of the aggregate id, one
-- lease per lane, so several relay processes share an outbox and each aggregate stays in one lane. This
-- table holds each outbox's lane count: every relay reads it, and only `nibble relay lanes` changes it,
-- while no relay publishes that outbox (the fence). An outbox without a row has one lane.

CREATE TABLE public.outbox_lanes (
    outbox name PRIMARY KEY,
    lane_count integer NOT NULL CHECK (lane_count BETWEEN 1 AND 1024)
);

INSERT INTO public.outbox_lanes (outbox, lane_count)
VALUES ('order_service', 8), ('driver_service', 8), ('restaurant_service', 8);

GRANT SELECT ON public.outbox_lanes TO nibble_relay;
