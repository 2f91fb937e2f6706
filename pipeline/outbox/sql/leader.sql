-- Which backend holds the relay lease of one outbox (the advisory lock of try_lease.sql), if any.
SELECT l.pid, a.backend_start
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = %(lease_class)s::oid AND l.objid = hashtext(%(schema)s)::oid AND l.objsubid = 2
