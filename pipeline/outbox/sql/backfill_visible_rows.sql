-- The rows of one table analytics sees: what Pinot's state table holds once every event is in (the filter is
-- the stream catalog's `visible` function of a row, or true).
SELECT count(*) FROM {table} t WHERE {visible}
