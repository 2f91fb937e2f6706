-- Settings for the claim only (claim_batch.sql runs in the same transaction). The planner, which cannot
-- know how many rows a lane holds, has preferred reading the whole outbox and sorting it (~300 ms per claim
-- at 100,000 rows) over walking an index in position order until the batch is full (~25 ms). A queue is
-- claimed from its head, so the claim never wants a sequential scan, nor a bitmap scan (it loses the
-- index's order), nor parallel workers on top of it. Nor, on a small outbox, the position index with a lane
-- filter in place of the lane index (migration 0026): at the default random_page_cost (4, disk seeks) the
-- lane index's scattered heap reads looked dearer than reading every row; the rows a claim reads were written
-- seconds ago and are in shared buffers, so a random read costs about what a sequential one does.
-- Local to the transaction: the backlog count (outbox_backlog.sql) is best served by a sequential scan.
-- The time zone only changes how occurred_at comes back (the same instant): in UTC, psycopg gives it
-- datetime.timezone.utc, whose offset the codec's epoch arithmetic reads ~0.3 us faster per event than a ZoneInfo's.
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SET LOCAL random_page_cost = 1.1;
SET LOCAL max_parallel_workers_per_gather = 0;
SET LOCAL TimeZone = 'UTC'
