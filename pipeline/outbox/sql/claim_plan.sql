-- Settings for the claim only (claim_batch.sql runs in the same transaction). Estimating the lane
-- filter, the planner assumes a few percent of rows match (it cannot know the hash spreads evenly: a relay's
-- lanes usually match a half or all of them) and prefers reading the whole outbox and sorting it (~300 ms
-- per claim at 100,000 rows) over walking the position index until the batch is full (~25 ms). A queue is
-- claimed from its head, so the claim never wants a sequential scan, nor parallel workers on top of it.
-- Local to the transaction: the backlog count (outbox_backlog.sql) is best served by a sequential scan.
-- The time zone only changes how occurred_at comes back (the same instant): in UTC, psycopg gives it
-- datetime.timezone.utc, whose offset the codec's epoch arithmetic reads ~0.3 us faster per event than a ZoneInfo's.
SET LOCAL enable_seqscan = off;
SET LOCAL max_parallel_workers_per_gather = 0;
SET LOCAL TimeZone = 'UTC'
