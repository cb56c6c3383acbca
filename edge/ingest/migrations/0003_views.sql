-- Views for people and dashboards (docs/central-store.md has example queries).

-- Pieces per machine per hour (UTC hours; group further with date_trunc in your
-- time zone). total/good/reject follow the roles the machine reported in that
-- hour, as the edge derives them (OEE.md section 5): good + reject = total.
CREATE VIEW plant.pieces_hourly AS
WITH sums AS (
    SELECT site, line, machine_id, date_trunc('hour', ts) AS hour,
           coalesce(sum(count) FILTER (WHERE role = 'total_count'), 0)::bigint AS t,
           coalesce(sum(count) FILTER (WHERE role = 'good_count'), 0)::bigint AS g,
           coalesce(sum(count) FILTER (WHERE role = 'reject_count'), 0)::bigint AS r,
           coalesce(sum(count) FILTER (WHERE role = 'quality_station_reject'), 0)::bigint AS x,
           bool_or(role = 'total_count') AS has_t,
           bool_or(role = 'good_count') AS has_g,
           bool_or(role = 'reject_count') AS has_r
    FROM plant.pieces
    GROUP BY site, line, machine_id, date_trunc('hour', ts)
)
SELECT site, line, machine_id, hour,
       CASE WHEN has_g AND has_r THEN g + r
            WHEN has_t THEN t
            WHEN has_g THEN g + x
            WHEN has_r THEN r
            ELSE 0 END AS pieces,
       CASE WHEN has_g AND has_r THEN g
            WHEN has_t AND has_g THEN g
            WHEN has_t AND has_r THEN t - r
            WHEN has_t THEN t - x
            WHEN has_g THEN g
            ELSE 0 END AS good_pieces,
       CASE WHEN has_g AND has_r THEN r
            WHEN has_t AND has_g THEN t - g
            WHEN has_t AND has_r THEN r
            WHEN has_t THEN x
            WHEN has_g THEN x
            WHEN has_r THEN r
            ELSE 0 END AS reject_pieces
FROM sums;

-- Shift KPIs per machine: the latest revision of each closed shift.
CREATE VIEW plant.shift_kpis AS
SELECT site, line, machine_id, window_key AS shift_key, name AS shift, start_ts, end_ts,
       scheduled_s, planned_stop_s, planned_production_s, run_s, downtime_s, downtime_events,
       micro_stops, micro_stop_s, total_count, good_count, reject_count, availability,
       performance, quality, oee, teep, mtbf_s, mttr_s, downtime_by_reason,
       pieces_outside_ppt, open_stop, revisions, revised_by, revision_ts, edge_id
FROM plant.window_kpis
WHERE window_kind = 'shift';

-- Shift KPIs per line: the line's machines pooled (sums of their times and
-- counts, ratios recomputed from the sums, as OEE.md section 6 defines them);
-- a ratio whose denominator is zero is null.
CREATE VIEW plant.shift_oee_by_line AS
WITH pooled AS (
    SELECT site, line, shift_key, shift, min(start_ts) AS start_ts, max(end_ts) AS end_ts,
           count(*) AS machines,
           sum(planned_production_s) AS planned_production_s,
           sum(run_s) AS run_s,
           sum(downtime_s) AS downtime_s,
           -- ideal seconds of what was made: performance * run time per machine
           sum(coalesce(performance, 0) * run_s) AS ideal_s,
           sum(total_count)::bigint AS total_count,
           sum(good_count)::bigint AS good_count,
           sum(reject_count)::bigint AS reject_count
    FROM plant.shift_kpis
    GROUP BY site, line, shift_key, shift
), ratios AS (
    SELECT *,
           run_s / nullif(planned_production_s, 0) AS availability,
           ideal_s / nullif(run_s, 0) AS performance,
           good_count::float8 / nullif(total_count, 0) AS quality
    FROM pooled
)
SELECT site, line, shift_key, shift, start_ts, end_ts, machines, planned_production_s, run_s,
       downtime_s, total_count, good_count, reject_count, availability, performance, quality,
       availability * performance * quality AS oee
FROM ratios;

-- Downtime per reason per machine and shift (the seconds availability lost to
-- each reason, comm_loss included), from the latest shift KPIs.
CREATE VIEW plant.shift_downtime_by_reason AS
SELECT k.site, k.line, k.machine_id, k.shift_key, k.shift, k.start_ts, k.end_ts,
       reason.key AS reason, reason.value::float8 AS downtime_s
FROM plant.shift_kpis AS k
CROSS JOIN LATERAL jsonb_each_text(k.downtime_by_reason) AS reason;

-- Gaps in a sequence, with what explains them: a drop-oldest report of the
-- edge's outbox naming the range, or dead-lettered batches covering it.
CREATE VIEW plant.seq_gap_report AS
SELECT g.edge_id, x.site, x.line, g.epoch, g.seq_first, g.seq_last,
       g.seq_last - g.seq_first + 1 AS missing, g.detected_at,
       r.seq AS explained_by_seq, r.ts AS explained_at, r.count AS reported_dropped,
       d.dead_letters,
       CASE WHEN r.seq IS NOT NULL THEN 'drop-oldest'
            WHEN d.dead_letters > 0 THEN 'dead-letter'
            END AS explanation
FROM plant.seq_gaps AS g
LEFT JOIN plant.edges AS x USING (edge_id)
LEFT JOIN LATERAL (
    SELECT o.seq, o.ts, o.count FROM plant.outbox_reports AS o
    WHERE o.edge_id = g.edge_id AND o.epoch = g.epoch AND o.policy = 'drop-oldest'
      AND o.stream = 'events' AND o.seq_first <= g.seq_first AND o.seq_last >= g.seq_last
    ORDER BY o.seq LIMIT 1
) AS r ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS dead_letters FROM plant.dead_letters AS l
    WHERE l.edge_id = g.edge_id AND l.epoch = g.epoch
      AND l.seq_first <= g.seq_last AND l.seq_last >= g.seq_first
) AS d ON true;

-- Every status change of every order, in order.
CREATE VIEW plant.order_history AS
SELECT e.site, e.line, e.data ->> 'order_id' AS order_id, e.ts, e.data ->> 'status' AS status,
       e.data ->> 'previous' AS previous, e.data ->> 'reason' AS reason,
       e.data ->> 'source' AS source, e.data ->> 'user' AS "user", e.edge_id, e.epoch, e.seq
FROM plant.events AS e
WHERE e.type = 'OrderStatusChanged';

CREATE VIEW plant.warnings AS
SELECT e.site, e.line, e.machine_id, e.ts, e.data ->> 'kind' AS kind,
       e.data ->> 'message' AS message, e.edge_id, e.epoch, e.seq
FROM plant.events AS e
WHERE e.type = 'Warning';
