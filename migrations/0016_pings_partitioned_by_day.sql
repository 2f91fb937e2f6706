-- driver_service.driver_location_pings partitioned by day of recorded_at, its partitions made ahead and
-- dropped past their retention by pg_partman (its background worker runs the maintenance hourly:
-- stack/postgres/postgresql.conf). Removing a day of pings becomes a DROP TABLE instead of a DELETE.
--
-- Online, after pg_partman's own method: the existing table, renamed, becomes the set's DEFAULT partition.
-- This transaction moves only today's pings (writers insert today's from now on, into today's partition)
-- and scans the old table once (attaching a default partition checks that none of its rows belongs to a
-- day partition); writers wait for it alone. The older rows move out to their days afterwards, one
-- committed day at a time, while writers go on: `CALL partman.partition_data_proc(...)`
-- (docs/migrations.md, "Partitions").

CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

LOCK TABLE driver_service.driver_location_pings IN ACCESS EXCLUSIVE MODE;

SET LOCAL ROLE driver_service_owner;

ALTER TABLE driver_service.driver_location_pings RENAME TO driver_location_pings_unpartitioned;
ALTER INDEX driver_service.driver_location_pings_pkey RENAME TO driver_location_pings_default_pkey;
ALTER INDEX driver_service.driver_location_pings_driver_time_idx RENAME TO driver_location_pings_default_driver_time_idx;
ALTER INDEX driver_service.driver_location_pings_location_gist RENAME TO driver_location_pings_default_location_gist;

-- A key of a partitioned table must hold its partition column, and no one refers to a ping: the parent has
-- no primary key, each day's partition gets PRIMARY KEY (id) from the template (ids are random uuids).
CREATE TABLE driver_service.driver_location_pings (
    LIKE driver_service.driver_location_pings_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    FOREIGN KEY (driver_id) REFERENCES driver_service.drivers (id),
    FOREIGN KEY (delivery_id) REFERENCES driver_service.deliveries (id)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX driver_location_pings_driver_time_idx
    ON driver_service.driver_location_pings (driver_id, recorded_at);
CREATE INDEX driver_location_pings_location_gist
    ON driver_service.driver_location_pings USING gist (location);

RESET ROLE;

-- Where pg_partman keeps the templates it makes itself, under the name it would give it.
CREATE TABLE partman.template_driver_service_driver_location_pings (
    LIKE driver_service.driver_location_pings,
    PRIMARY KEY (id)
);

-- Partitions from today on only (left alone, pg_partman would also make 4 days back, which old rows fill).
-- pg_partman 4.x (Debian) calls native range partitioning 'native', 5.x 'range'.
SELECT partman.create_parent(
    p_parent_table := 'driver_service.driver_location_pings',
    p_control := 'recorded_at',
    p_type := (SELECT CASE WHEN extversion LIKE '4.%' THEN 'native' ELSE 'range' END
               FROM pg_extension WHERE extname = 'pg_partman'),
    p_interval := '1 day',
    p_premake := 4,
    p_start_partition := date_trunc('day', now())::text,
    p_template_table := 'partman.template_driver_service_driver_location_pings'
);

-- Pings are kept 30 days, then their day's partition is dropped (docs/migrations.md tells how to change it).
-- Partitions are made ahead from today's date, not from the newest row; a partition made by the background
-- worker (which runs as postgres) is handed to the schema's owner like every other table.
UPDATE partman.part_config
SET retention = '30 days',
    retention_keep_table = false,
    infinite_time_partitions = true,
    inherit_privileges = true
WHERE parent_table = 'driver_service.driver_location_pings';
SELECT partman.reapply_privileges('driver_service.driver_location_pings');

-- Today's pings (and any ahead) move now, to the partitions writers use from now on; a stray beyond the
-- partitions made lands in pg_partman's empty DEFAULT and goes back to the old table, the set's DEFAULT.
WITH moved AS (
    DELETE FROM driver_service.driver_location_pings_unpartitioned
    WHERE recorded_at >= date_trunc('day', now())
    RETURNING *
)
INSERT INTO driver_service.driver_location_pings SELECT * FROM moved;
WITH beyond AS (DELETE FROM driver_service.driver_location_pings_default RETURNING *)
INSERT INTO driver_service.driver_location_pings_unpartitioned SELECT * FROM beyond;
DROP TABLE driver_service.driver_location_pings_default;
ALTER TABLE driver_service.driver_location_pings_unpartitioned RENAME TO driver_location_pings_default;
ALTER TABLE driver_service.driver_location_pings ATTACH PARTITION driver_service.driver_location_pings_default DEFAULT;
