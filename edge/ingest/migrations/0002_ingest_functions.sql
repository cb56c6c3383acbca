-- The two steps of storing a batch, each one round trip, both inside the
-- batch's transaction (edge/ingest/writer.py):
--
--   plant.ingest_begin(...)   -> the sequence ranges of the batch not stored yet
--                                (NULL: this batch id was stored before: a no-op)
--   COPY plant.events            those events
--   plant.ingest_derive(...)  -> the typed tables from the events just copied
--
-- Batches of one line may reach any worker, in any order: everything here is
-- serialised per (edge, epoch) by a transaction-scoped advisory lock, and every
-- "latest wins" decision is made by the events' own order (event time, seq),
-- never by arrival.

CREATE FUNCTION plant.ingest_begin(
    p_edge        text,
    p_epoch       text,
    p_batch       text,
    p_first       bigint,
    p_last        bigint,
    p_historical  boolean,
    p_sent_at     timestamptz,
    p_site        text,
    p_line        text,
    p_worker      text
) RETURNS bigint[]  -- [lo1, hi1, lo2, hi2, ...] in ascending order; NULL: batch seen before
LANGUAGE plpgsql AS $$
DECLARE
    e        plant.epochs%ROWTYPE;
    below    bigint[] := '{}';
    inside   bigint[] := '{}';
    above    bigint[] := '{}';
    ranges   bigint[];
    fresh    bigint := 0;
    g        record;
    lo       bigint;
    hi       bigint;
    i        integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_edge || chr(31) || p_epoch, 0));
    PERFORM 1 FROM plant.batches WHERE edge_id = p_edge AND batch_id = p_batch;
    IF FOUND THEN
        RETURN NULL;
    END IF;

    SELECT * INTO e FROM plant.epochs WHERE edge_id = p_edge AND epoch = p_epoch;
    IF NOT FOUND THEN
        INSERT INTO plant.epochs (edge_id, epoch, low_seq, high_seq)
        VALUES (p_edge, p_epoch, p_first, p_last);
        ranges := ARRAY[p_first, p_last];
    ELSE
        IF p_first < e.low_seq THEN
            below := ARRAY[p_first, least(p_last, e.low_seq - 1)];
            IF p_last < e.low_seq - 1 THEN
                INSERT INTO plant.seq_gaps (edge_id, epoch, seq_first, seq_last)
                VALUES (p_edge, p_epoch, p_last + 1, e.low_seq - 1);
            END IF;
        END IF;
        IF p_last > e.high_seq THEN
            above := ARRAY[greatest(p_first, e.high_seq + 1), p_last];
            IF p_first > e.high_seq + 1 THEN
                INSERT INTO plant.seq_gaps (edge_id, epoch, seq_first, seq_last)
                VALUES (p_edge, p_epoch, e.high_seq + 1, p_first - 1);
            END IF;
        END IF;
        -- Inside low..high only the holes are new; the batch fills (part of) them.
        FOR g IN
            SELECT seq_first, seq_last, detected_at FROM plant.seq_gaps
            WHERE edge_id = p_edge AND epoch = p_epoch
              AND seq_first <= least(p_last, e.high_seq)
              AND seq_last >= greatest(p_first, e.low_seq)
            ORDER BY seq_first
        LOOP
            lo := greatest(g.seq_first, p_first);
            hi := least(g.seq_last, p_last);
            inside := inside || ARRAY[lo, hi];
            DELETE FROM plant.seq_gaps
            WHERE edge_id = p_edge AND epoch = p_epoch AND seq_first = g.seq_first;
            IF g.seq_first < lo THEN
                INSERT INTO plant.seq_gaps (edge_id, epoch, seq_first, seq_last, detected_at)
                VALUES (p_edge, p_epoch, g.seq_first, lo - 1, g.detected_at);
            END IF;
            IF g.seq_last > hi THEN
                INSERT INTO plant.seq_gaps (edge_id, epoch, seq_first, seq_last, detected_at)
                VALUES (p_edge, p_epoch, hi + 1, g.seq_last, g.detected_at);
            END IF;
        END LOOP;
        ranges := below || inside || above;
    END IF;

    i := 1;
    WHILE i < coalesce(array_length(ranges, 1), 0) LOOP
        fresh := fresh + ranges[i + 1] - ranges[i] + 1;
        i := i + 2;
    END LOOP;
    UPDATE plant.epochs
    SET low_seq = least(low_seq, p_first),
        high_seq = greatest(high_seq, p_last),
        events = events + fresh,
        batches = batches + 1,
        last_seen = now()
    WHERE edge_id = p_edge AND epoch = p_epoch;
    INSERT INTO plant.batches
        (edge_id, batch_id, epoch, seq_first, seq_last, count, new_events, historical,
         sent_at, worker)
    VALUES
        (p_edge, p_batch, p_epoch, p_first, p_last, p_last - p_first + 1, fresh, p_historical,
         p_sent_at, p_worker);
    INSERT INTO plant.edges AS x (edge_id, site, line) VALUES (p_edge, p_site, p_line)
    ON CONFLICT (edge_id) DO UPDATE
    SET site = excluded.site, line = excluded.line, last_seen = now()
    WHERE x.last_seen < now() - interval '1 second' OR x.site <> excluded.site
       OR x.line <> excluded.line;
    RETURN ranges;
END;
$$;


-- Seconds since the Unix epoch (the wire's times) as a timestamptz; NULL stays NULL.
CREATE FUNCTION plant.epoch_ts(value jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$ SELECT to_timestamp((value #>> '{}')::double precision) $$;


CREATE FUNCTION plant.ingest_derive(
    p_edge   text,
    p_epoch  text,
    p_batch  text,
    p_first  bigint,
    p_last   bigint,
    p_types  text[]   -- the event types in the batch: only their tables are touched
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r  record;
    k  jsonb;
BEGIN
    IF 'PiecesCounted' = ANY (p_types) THEN
        INSERT INTO plant.pieces
            (edge_id, epoch, seq, site, line, machine_id, ts, role, count, order_id)
        SELECT edge_id, epoch, seq, site, line, machine_id, ts,
               data ->> 'role', (data ->> 'count')::bigint, data ->> 'order_id'
        FROM plant.events
        WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
          AND batch_id = p_batch AND type = 'PiecesCounted';
    END IF;

    IF 'StateChanged' = ANY (p_types) THEN
        INSERT INTO plant.state_changes
            (edge_id, epoch, seq, site, line, machine_id, ts, state, previous)
        SELECT edge_id, epoch, seq, site, line, machine_id, ts,
               data ->> 'state', data ->> 'previous'
        FROM plant.events
        WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
          AND batch_id = p_batch AND type = 'StateChanged';
    END IF;

    IF p_types && ARRAY['StopStarted', 'StopEnded', 'StopReasonChanged'] THEN
        FOR r IN
            SELECT seq, type, site, line, machine_id, ts, data FROM plant.events
            WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
              AND batch_id = p_batch
              AND type IN ('StopStarted', 'StopEnded', 'StopReasonChanged')
            ORDER BY seq
        LOOP
            INSERT INTO plant.stops AS s
                (edge_id, epoch, machine_id, stop_id, site, line, start_ts, end_ts, duration_s,
                 kind, reason, category, first_reason, reason_changes, first_seq, reason_seq,
                 ended_seq)
            VALUES (
                p_edge, p_epoch, r.machine_id, (r.data ->> 'stop_id')::bigint, r.site, r.line,
                CASE r.type
                    WHEN 'StopStarted' THEN r.ts
                    WHEN 'StopEnded' THEN plant.epoch_ts(r.data -> 'start')
                    ELSE plant.epoch_ts(r.data -> 'stop_start') END,
                CASE r.type
                    WHEN 'StopEnded' THEN plant.epoch_ts(r.data -> 'end')
                    WHEN 'StopReasonChanged' THEN plant.epoch_ts(r.data -> 'stop_end') END,
                CASE WHEN r.type = 'StopEnded' THEN (r.data ->> 'duration_s')::float8 END,
                CASE WHEN r.type = 'StopEnded' THEN r.data ->> 'kind' END,
                r.data ->> 'reason',
                r.data ->> 'category',
                CASE WHEN r.type = 'StopReasonChanged' THEN r.data ->> 'previous_reason'
                     ELSE r.data ->> 'reason' END,
                CASE WHEN r.type = 'StopReasonChanged' THEN 1 ELSE 0 END,
                r.seq,
                r.seq,
                CASE WHEN r.type = 'StopEnded' THEN r.seq END)
            ON CONFLICT (edge_id, epoch, machine_id, stop_id) DO UPDATE SET
                start_ts = coalesce(s.start_ts, excluded.start_ts),
                end_ts = coalesce(excluded.end_ts, s.end_ts),
                duration_s = coalesce(excluded.duration_s, s.duration_s),
                kind = coalesce(excluded.kind, s.kind),
                ended_seq = coalesce(excluded.ended_seq, s.ended_seq),
                reason = CASE WHEN excluded.reason_seq > s.reason_seq
                              THEN excluded.reason ELSE s.reason END,
                category = CASE WHEN excluded.reason_seq > s.reason_seq
                                THEN excluded.category ELSE s.category END,
                reason_seq = greatest(s.reason_seq, excluded.reason_seq),
                first_reason = CASE WHEN excluded.first_seq < s.first_seq
                                    THEN excluded.first_reason ELSE s.first_reason END,
                first_seq = least(s.first_seq, excluded.first_seq),
                reason_changes = s.reason_changes + excluded.reason_changes;
        END LOOP;
    END IF;

    IF p_types && ARRAY['ShiftClosed', 'OrderWindowClosed', 'WindowRevised'] THEN
        FOR r IN
            SELECT seq, type, site, line, machine_id, ts, data FROM plant.events
            WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
              AND batch_id = p_batch
              AND type IN ('ShiftClosed', 'OrderWindowClosed', 'WindowRevised')
            ORDER BY seq
        LOOP
            k := r.data -> 'kpis';
            INSERT INTO plant.window_kpis AS w
                (edge_id, machine_id, window_kind, window_key, start_ts, site, line, name,
                 end_ts, closed, open_stop, scheduled_s, planned_stop_s, planned_production_s,
                 run_s, downtime_s, downtime_events, micro_stops, micro_stop_s, total_count,
                 good_count, reject_count, availability, performance, quality, oee, teep,
                 mtbf_s, mttr_s, downtime_by_reason, pieces_outside_ppt, revisions, revised_by,
                 revision_ts, revision_epoch, revision_seq)
            VALUES (
                p_edge, r.machine_id, k ->> 'window', k ->> 'key', plant.epoch_ts(k -> 'start'),
                r.site, r.line, k ->> 'name', plant.epoch_ts(k -> 'end'),
                (k ->> 'closed')::boolean, (k ->> 'open_stop')::boolean,
                (k ->> 'scheduled_s')::float8, (k ->> 'planned_stop_s')::float8,
                (k ->> 'planned_production_s')::float8, (k ->> 'run_s')::float8,
                (k ->> 'downtime_s')::float8, (k ->> 'downtime_events')::integer,
                (k ->> 'micro_stops')::integer, (k ->> 'micro_stop_s')::float8,
                (k ->> 'total_count')::bigint, (k ->> 'good_count')::bigint,
                (k ->> 'reject_count')::bigint, (k ->> 'availability')::float8,
                (k ->> 'performance')::float8, (k ->> 'quality')::float8,
                (k ->> 'oee')::float8, (k ->> 'teep')::float8, (k ->> 'mtbf_s')::float8,
                (k ->> 'mttr_s')::float8, coalesce(k -> 'downtime_by_reason', '{}'::jsonb),
                (k ->> 'pieces_outside_ppt')::bigint, 1, r.type, r.ts, p_epoch, r.seq)
            ON CONFLICT (edge_id, machine_id, window_kind, window_key, start_ts) DO UPDATE SET
                revisions = w.revisions + 1,
                (site, line, name, end_ts, closed, open_stop, scheduled_s, planned_stop_s,
                 planned_production_s, run_s, downtime_s, downtime_events, micro_stops,
                 micro_stop_s, total_count, good_count, reject_count, availability,
                 performance, quality, oee, teep, mtbf_s, mttr_s, downtime_by_reason,
                 pieces_outside_ppt, revised_by, revision_ts, revision_epoch, revision_seq) =
                (SELECT x.* FROM (
                    SELECT excluded.site, excluded.line, excluded.name, excluded.end_ts,
                           excluded.closed, excluded.open_stop, excluded.scheduled_s,
                           excluded.planned_stop_s, excluded.planned_production_s,
                           excluded.run_s, excluded.downtime_s, excluded.downtime_events,
                           excluded.micro_stops, excluded.micro_stop_s, excluded.total_count,
                           excluded.good_count, excluded.reject_count, excluded.availability,
                           excluded.performance, excluded.quality, excluded.oee,
                           excluded.teep, excluded.mtbf_s, excluded.mttr_s,
                           excluded.downtime_by_reason, excluded.pieces_outside_ppt,
                           excluded.revised_by, excluded.revision_ts,
                           excluded.revision_epoch, excluded.revision_seq
                    WHERE (excluded.revision_ts, excluded.revision_seq)
                          > (w.revision_ts, w.revision_seq)
                    UNION ALL
                    SELECT w.site, w.line, w.name, w.end_ts, w.closed, w.open_stop,
                           w.scheduled_s, w.planned_stop_s, w.planned_production_s, w.run_s,
                           w.downtime_s, w.downtime_events, w.micro_stops, w.micro_stop_s,
                           w.total_count, w.good_count, w.reject_count, w.availability,
                           w.performance, w.quality, w.oee, w.teep, w.mtbf_s, w.mttr_s,
                           w.downtime_by_reason, w.pieces_outside_ppt, w.revised_by,
                           w.revision_ts, w.revision_epoch, w.revision_seq
                    WHERE NOT (excluded.revision_ts, excluded.revision_seq)
                              > (w.revision_ts, w.revision_seq)
                ) AS x);
        END LOOP;
    END IF;

    IF p_types && ARRAY['OrderStatusChanged', 'OrderProgress'] THEN
        FOR r IN
            SELECT seq, type, site, line, ts, data FROM plant.events
            WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
              AND batch_id = p_batch AND type IN ('OrderStatusChanged', 'OrderProgress')
            ORDER BY seq
        LOOP
            IF r.type = 'OrderStatusChanged' THEN
                INSERT INTO plant.orders AS o
                    (edge_id, order_id, site, line, status, previous_status, reason, status_ts,
                     status_seq, status_changes, first_ts)
                VALUES (p_edge, r.data ->> 'order_id', r.site, r.line, r.data ->> 'status',
                        r.data ->> 'previous', r.data ->> 'reason', r.ts, r.seq, 1, r.ts)
                ON CONFLICT (edge_id, order_id) DO UPDATE SET
                    status_changes = o.status_changes + 1,
                    first_ts = least(o.first_ts, excluded.first_ts),
                    (status, previous_status, reason, status_ts, status_seq) =
                    (SELECT x.* FROM (
                        SELECT excluded.status, excluded.previous_status, excluded.reason,
                               excluded.status_ts, excluded.status_seq
                        WHERE o.status_ts IS NULL
                           OR (excluded.status_ts, excluded.status_seq)
                              > (o.status_ts, o.status_seq)
                        UNION ALL
                        SELECT o.status, o.previous_status, o.reason, o.status_ts, o.status_seq
                        WHERE NOT (o.status_ts IS NULL
                           OR (excluded.status_ts, excluded.status_seq)
                              > (o.status_ts, o.status_seq))
                    ) AS x);
            ELSE
                INSERT INTO plant.orders AS o
                    (edge_id, order_id, site, line, good_quantity, reject_quantity,
                     total_quantity, target_quantity, progress_ts, progress_seq, first_ts)
                VALUES (p_edge, r.data ->> 'order_id', r.site, r.line,
                        (r.data ->> 'good_quantity')::bigint,
                        (r.data ->> 'reject_quantity')::bigint,
                        (r.data ->> 'total_quantity')::bigint,
                        (r.data ->> 'target_quantity')::bigint, r.ts, r.seq, r.ts)
                ON CONFLICT (edge_id, order_id) DO UPDATE SET
                    first_ts = least(o.first_ts, excluded.first_ts),
                    (good_quantity, reject_quantity, total_quantity, target_quantity,
                     progress_ts, progress_seq) =
                    (SELECT x.* FROM (
                        SELECT excluded.good_quantity, excluded.reject_quantity,
                               excluded.total_quantity, excluded.target_quantity,
                               excluded.progress_ts, excluded.progress_seq
                        WHERE o.progress_ts IS NULL
                           OR (excluded.progress_ts, excluded.progress_seq)
                              > (o.progress_ts, o.progress_seq)
                        UNION ALL
                        SELECT o.good_quantity, o.reject_quantity, o.total_quantity,
                               o.target_quantity, o.progress_ts, o.progress_seq
                        WHERE NOT (o.progress_ts IS NULL
                           OR (excluded.progress_ts, excluded.progress_seq)
                              > (o.progress_ts, o.progress_seq))
                    ) AS x);
            END IF;
        END LOOP;
    END IF;

    IF 'BatchRecordCompleted' = ANY (p_types) THEN
        FOR r IN
            SELECT seq, site, line, ts, data FROM plant.events
            WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
              AND batch_id = p_batch AND type = 'BatchRecordCompleted'
            ORDER BY seq
        LOOP
            k := r.data -> 'record';
            INSERT INTO plant.batch_records AS b
                (edge_id, order_id, site, line, ts, product, operation_id, status, reason,
                 target_quantity, good_quantity, reject_quantity, rework_quantity,
                 total_quantity, start_ts, end_ts, produced_lot_id, record, epoch, seq)
            VALUES (p_edge, r.data ->> 'order_id', r.site, r.line, r.ts, k ->> 'product',
                    k ->> 'operation_id', k ->> 'status', k ->> 'reason',
                    (k ->> 'target_quantity')::bigint, (k ->> 'good_quantity')::bigint,
                    (k ->> 'reject_quantity')::bigint, (k ->> 'rework_quantity')::bigint,
                    (k ->> 'total_quantity')::bigint, plant.epoch_ts(k -> 'start'),
                    plant.epoch_ts(k -> 'end'), k ->> 'produced_lot_id', k, p_epoch, r.seq)
            ON CONFLICT (edge_id, order_id) DO UPDATE SET
                (site, line, ts, product, operation_id, status, reason, target_quantity,
                 good_quantity, reject_quantity, rework_quantity, total_quantity, start_ts,
                 end_ts, produced_lot_id, record, epoch, seq) =
                (excluded.site, excluded.line, excluded.ts, excluded.product,
                 excluded.operation_id, excluded.status, excluded.reason,
                 excluded.target_quantity, excluded.good_quantity, excluded.reject_quantity,
                 excluded.rework_quantity, excluded.total_quantity, excluded.start_ts,
                 excluded.end_ts, excluded.produced_lot_id, excluded.record, excluded.epoch,
                 excluded.seq)
            WHERE (excluded.ts, excluded.seq) > (b.ts, b.seq);
        END LOOP;
    END IF;

    IF 'InspectionRecorded' = ANY (p_types) THEN
        INSERT INTO plant.inspections
            (edge_id, epoch, seq, site, line, machine_id, station_id, ts, order_id, passed,
             failed, disposition, reason_code, source, feeds_machine_rejects)
        SELECT edge_id, epoch, seq, site, line, machine_id, data ->> 'station_id', ts,
               data ->> 'order_id', (data ->> 'passed')::bigint, (data ->> 'failed')::bigint,
               data ->> 'disposition', data ->> 'reason_code', data ->> 'source',
               (data ->> 'feeds_machine_rejects')::boolean
        FROM plant.events
        WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
          AND batch_id = p_batch AND type = 'InspectionRecorded';
    END IF;

    IF 'RejectsDisposed' = ANY (p_types) THEN
        INSERT INTO plant.rejects_disposed
            (edge_id, epoch, seq, site, line, machine_id, station_id, ts, order_id, count,
             disposition, reason_code)
        SELECT edge_id, epoch, seq, site, line, machine_id, data ->> 'station_id', ts,
               data ->> 'order_id', (data ->> 'count')::bigint, data ->> 'disposition',
               data ->> 'reason_code'
        FROM plant.events
        WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
          AND batch_id = p_batch AND type = 'RejectsDisposed';
    END IF;

    IF 'SpcViolation' = ANY (p_types) THEN
        INSERT INTO plant.spc_violations
            (edge_id, epoch, seq, site, line, machine_id, station_id, ts, order_id,
             characteristic, chart, rule, value, description, alarm_id, new_alarm)
        SELECT edge_id, epoch, seq, site, line, machine_id, data ->> 'station_id', ts,
               data ->> 'order_id', data ->> 'characteristic', data ->> 'chart',
               (data ->> 'rule')::integer, (data ->> 'value')::float8, data ->> 'description',
               data ->> 'alarm_id', (data ->> 'new_alarm')::boolean
        FROM plant.events
        WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
          AND batch_id = p_batch AND type = 'SpcViolation';
    END IF;

    IF 'OutboxPolicyApplied' = ANY (p_types) THEN
        INSERT INTO plant.outbox_reports
            (edge_id, epoch, seq, ts, stream, policy, count, seq_first, seq_last, total)
        SELECT edge_id, epoch, seq, ts, data ->> 'stream', data ->> 'policy',
               (data ->> 'count')::bigint, (data ->> 'seq_first')::bigint,
               (data ->> 'seq_last')::bigint, (data ->> 'total')::bigint
        FROM plant.events
        WHERE edge_id = p_edge AND epoch = p_epoch AND seq BETWEEN p_first AND p_last
          AND batch_id = p_batch AND type = 'OutboxPolicyApplied';
    END IF;
END;
$$;
