-- TimescaleDB, when the server has it: the two big append-only tables become
-- hypertables partitioned by event time. Without the extension (or when it is
-- not preloaded) this changes nothing and the plain tables serve the same queries.
--
-- A hypertable's unique keys must contain its time column, so their primary key
-- becomes (edge_id, epoch, seq, ts); exactly-once does not rest on it anyway:
-- plant.ingest_begin hands out each seq once per (edge, epoch).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        RAISE NOTICE 'timescaledb is not available: plain tables';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    EXCEPTION WHEN others THEN
        RAISE NOTICE 'timescaledb cannot be created (%): plain tables', SQLERRM;
        RETURN;
    END;
    ALTER TABLE plant.events DROP CONSTRAINT events_pkey;
    ALTER TABLE plant.events ADD PRIMARY KEY (edge_id, epoch, seq, ts);
    PERFORM create_hypertable('plant.events', 'ts', migrate_data => true,
                              chunk_time_interval => interval '1 day');
    ALTER TABLE plant.pieces DROP CONSTRAINT pieces_pkey;
    ALTER TABLE plant.pieces ADD PRIMARY KEY (edge_id, epoch, seq, ts);
    PERFORM create_hypertable('plant.pieces', 'ts', migrate_data => true,
                              chunk_time_interval => interval '7 days');
END;
$$;
