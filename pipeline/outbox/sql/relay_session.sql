-- The relay's session settings. Estimating the lane filter of claim_batch.sql, the planner assumes a few
-- percent of rows match (it cannot know the hash spreads evenly: a relay's lanes usually match a half or
-- all of them) and prefers reading the whole outbox and sorting it (~300 ms per claim at 100,000 rows)
-- over walking the position index until the batch is full (~25 ms). A queue is always read from its head,
-- so the relay's session never wants a sequential scan, nor parallel workers on top of it.
SET enable_seqscan = off;
SET max_parallel_workers_per_gather = 0
