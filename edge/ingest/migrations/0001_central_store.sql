-- The central store: every line's events, exactly once, and tables people query.
-- Applied once, in one transaction, by `edge ingest` (edge/ingest/schema.py); the
-- applied versions are in plant.schema_migrations. docs/central-store.md explains
-- every table and view.

CREATE SCHEMA IF NOT EXISTS plant;

-- ------------------------------------------------------------------ bookkeeping

-- One row per edge (line controller) ever seen; site and line come from the topic.
CREATE TABLE plant.edges (
    edge_id     text PRIMARY KEY,
    site        text NOT NULL,
    line        text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

-- One row per (edge, epoch): an epoch is one run of the edge's sequence (a new
-- outbox file starts a new epoch at seq 1). low_seq..high_seq is the range seen;
-- what inside it is missing is in plant.seq_gaps.
CREATE TABLE plant.epochs (
    edge_id     text NOT NULL,
    epoch       text NOT NULL,
    low_seq     bigint NOT NULL,
    high_seq    bigint NOT NULL,
    events      bigint NOT NULL DEFAULT 0,
    batches     bigint NOT NULL DEFAULT 0,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (edge_id, epoch)
);

-- Every batch stored, by its id: a batch seen again is a no-op.
CREATE TABLE plant.batches (
    edge_id      text NOT NULL,
    batch_id     text NOT NULL,
    epoch        text NOT NULL,
    seq_first    bigint NOT NULL,
    seq_last     bigint NOT NULL,
    count        integer NOT NULL,
    new_events   integer NOT NULL,   -- events not already stored under another batch id
    historical   boolean NOT NULL,
    sent_at      timestamptz NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    worker       text NOT NULL,
    PRIMARY KEY (edge_id, batch_id)
);

-- Holes in an epoch's sequence between low_seq and high_seq. A hole opened by
-- batches arriving out of order (two workers) closes when the late batch lands;
-- one that stays is a loss: plant.seq_gap_report says what explains it.
CREATE TABLE plant.seq_gaps (
    edge_id      text NOT NULL,
    epoch        text NOT NULL,
    seq_first    bigint NOT NULL,
    seq_last     bigint NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (edge_id, epoch, seq_first),
    CHECK (seq_first <= seq_last)
);

-- Messages that are not valid batches (or that the database refused), kept with
-- the reason and the payload; the worker acknowledges them and goes on.
CREATE TABLE plant.dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    worker       text NOT NULL,
    topic        text NOT NULL,
    reason       text NOT NULL,
    edge_id      text,
    epoch        text,
    batch_id     text,
    seq_first    bigint,
    seq_last     bigint,
    payload      bytea NOT NULL
);
CREATE INDEX dead_letters_edge ON plant.dead_letters (edge_id, epoch, seq_first);

-- ------------------------------------------------------------------ raw events

CREATE TABLE plant.events (
    edge_id      text NOT NULL,
    epoch        text NOT NULL,
    seq          bigint NOT NULL,
    type         text NOT NULL,
    site         text NOT NULL,
    line         text NOT NULL,
    machine_id   text NOT NULL,      -- '' for line-level events (orders, outbox reports)
    ts           timestamptz NOT NULL,  -- event time
    data         jsonb NOT NULL,     -- the event's fields as sent (docs/mqtt-and-qmib.md)
    batch_id     text NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (edge_id, epoch, seq)
);
CREATE INDEX events_type_ts ON plant.events (type, ts);
CREATE INDEX events_line_ts ON plant.events (site, line, ts);

-- ------------------------------------------------------------------ typed tables

CREATE TABLE plant.pieces (
    edge_id     text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    site        text NOT NULL,
    line        text NOT NULL,
    machine_id  text NOT NULL,
    ts          timestamptz NOT NULL,
    role        text NOT NULL,   -- total_count | good_count | reject_count | quality_station_reject
    count       bigint NOT NULL,
    order_id    text,
    PRIMARY KEY (edge_id, epoch, seq)
);
CREATE INDEX pieces_machine_ts ON plant.pieces (site, line, machine_id, ts);

CREATE TABLE plant.state_changes (
    edge_id     text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    site        text NOT NULL,
    line        text NOT NULL,
    machine_id  text NOT NULL,
    ts          timestamptz NOT NULL,
    state       text NOT NULL,   -- running | stopped | unknown
    previous    text NOT NULL,
    PRIMARY KEY (edge_id, epoch, seq)
);
CREATE INDEX state_changes_machine_ts ON plant.state_changes (site, line, machine_id, ts);

-- One row per stop, whatever order its events arrived in: the reason is the one
-- of its latest event (StopStarted, StopReasonChanged, StopEnded) by seq.
CREATE TABLE plant.stops (
    edge_id         text NOT NULL,
    epoch           text NOT NULL,
    machine_id      text NOT NULL,
    stop_id         bigint NOT NULL,
    site            text NOT NULL,
    line            text NOT NULL,
    start_ts        timestamptz,
    end_ts          timestamptz,     -- null while the stop is open
    duration_s      double precision,
    kind            text,            -- micro_stop | downtime | planned, as classified at its end
    reason          text NOT NULL,
    category        text NOT NULL,   -- planned | unplanned
    first_reason    text NOT NULL,   -- the reason it started with
    reason_changes  integer NOT NULL DEFAULT 0,
    first_seq       bigint NOT NULL,
    reason_seq      bigint NOT NULL,
    ended_seq       bigint,
    PRIMARY KEY (edge_id, epoch, machine_id, stop_id)
);
CREATE INDEX stops_line_start ON plant.stops (site, line, start_ts);

-- KPIs of closed windows (OEE.md section 6): a shift (ShiftClosed) or an order's
-- segment on a machine (OrderWindowClosed), revised by WindowRevised. The latest
-- revision wins: the one with the latest event time, then the highest seq.
CREATE TABLE plant.window_kpis (
    edge_id               text NOT NULL,
    machine_id            text NOT NULL,
    window_kind           text NOT NULL,   -- shift | order
    window_key            text NOT NULL,   -- shift instance ("Day@2026-01-05") or order id
    start_ts              timestamptz NOT NULL,
    site                  text NOT NULL,
    line                  text NOT NULL,
    name                  text NOT NULL,
    end_ts                timestamptz NOT NULL,
    closed                boolean NOT NULL,
    open_stop             boolean NOT NULL,
    scheduled_s           double precision NOT NULL,
    planned_stop_s        double precision NOT NULL,
    planned_production_s  double precision NOT NULL,
    run_s                 double precision NOT NULL,
    downtime_s            double precision NOT NULL,
    downtime_events       integer NOT NULL,
    micro_stops           integer NOT NULL,
    micro_stop_s          double precision NOT NULL,
    total_count           bigint NOT NULL,
    good_count            bigint NOT NULL,
    reject_count          bigint NOT NULL,
    availability          double precision,   -- null: zero denominator (never 0 or 1)
    performance           double precision,
    quality               double precision,
    oee                   double precision,
    teep                  double precision,
    mtbf_s                double precision,
    mttr_s                double precision,
    downtime_by_reason    jsonb NOT NULL,     -- {"reason": seconds}
    pieces_outside_ppt    bigint NOT NULL,
    revisions             integer NOT NULL DEFAULT 1,
    revised_by            text NOT NULL,      -- ShiftClosed | OrderWindowClosed | WindowRevised
    revision_ts           timestamptz NOT NULL,
    revision_epoch        text NOT NULL,
    revision_seq          bigint NOT NULL,
    PRIMARY KEY (edge_id, machine_id, window_kind, window_key, start_ts)
);
CREATE INDEX window_kpis_line_start ON plant.window_kpis (site, line, window_kind, start_ts);

-- Work orders: the latest status and the latest quantities reported.
CREATE TABLE plant.orders (
    edge_id            text NOT NULL,
    order_id           text NOT NULL,
    site               text NOT NULL,
    line               text NOT NULL,
    status             text,
    previous_status    text,
    reason             text,
    status_ts          timestamptz,    -- the latest status by event time, then seq
    status_seq         bigint,
    status_changes     integer NOT NULL DEFAULT 0,
    first_ts           timestamptz,
    good_quantity      bigint,
    reject_quantity    bigint,
    total_quantity     bigint,
    target_quantity    bigint,
    progress_ts        timestamptz,
    progress_seq       bigint,
    PRIMARY KEY (edge_id, order_id)
);

CREATE TABLE plant.batch_records (
    edge_id          text NOT NULL,
    order_id         text NOT NULL,
    site             text NOT NULL,
    line             text NOT NULL,
    ts               timestamptz NOT NULL,
    product          text,
    operation_id     text,
    status           text,
    reason           text,
    target_quantity  bigint,
    good_quantity    bigint,
    reject_quantity  bigint,
    rework_quantity  bigint,
    total_quantity   bigint,
    start_ts         timestamptz,
    end_ts           timestamptz,
    produced_lot_id  text,
    record           jsonb NOT NULL,
    epoch            text NOT NULL,
    seq              bigint NOT NULL,
    PRIMARY KEY (edge_id, order_id)
);

CREATE TABLE plant.inspections (
    edge_id                text NOT NULL,
    epoch                  text NOT NULL,
    seq                    bigint NOT NULL,
    site                   text NOT NULL,
    line                   text NOT NULL,
    machine_id             text NOT NULL,
    station_id             text NOT NULL,
    ts                     timestamptz NOT NULL,
    order_id               text,
    passed                 bigint NOT NULL,
    failed                 bigint NOT NULL,
    disposition            text NOT NULL,
    reason_code            text NOT NULL,
    source                 text NOT NULL,
    feeds_machine_rejects  boolean NOT NULL,
    PRIMARY KEY (edge_id, epoch, seq)
);
CREATE INDEX inspections_station_ts ON plant.inspections (site, line, station_id, ts);

CREATE TABLE plant.rejects_disposed (
    edge_id      text NOT NULL,
    epoch        text NOT NULL,
    seq          bigint NOT NULL,
    site         text NOT NULL,
    line         text NOT NULL,
    machine_id   text NOT NULL,
    station_id   text NOT NULL,
    ts           timestamptz NOT NULL,
    order_id     text,
    count        bigint NOT NULL,
    disposition  text NOT NULL,
    reason_code  text NOT NULL,
    PRIMARY KEY (edge_id, epoch, seq)
);

CREATE TABLE plant.spc_violations (
    edge_id         text NOT NULL,
    epoch           text NOT NULL,
    seq             bigint NOT NULL,
    site            text NOT NULL,
    line            text NOT NULL,
    machine_id      text NOT NULL,
    station_id      text NOT NULL,
    ts              timestamptz NOT NULL,
    order_id        text,
    characteristic  text NOT NULL,
    chart           text NOT NULL,
    rule            integer NOT NULL,
    value           double precision,
    description     text NOT NULL,
    alarm_id        text NOT NULL,
    new_alarm       boolean NOT NULL,
    PRIMARY KEY (edge_id, epoch, seq)
);

-- The outbox's OutboxPolicyApplied reports: what explains a gap (drop-oldest).
CREATE TABLE plant.outbox_reports (
    edge_id    text NOT NULL,
    epoch      text NOT NULL,
    seq        bigint NOT NULL,
    ts         timestamptz NOT NULL,
    stream     text NOT NULL,
    policy     text NOT NULL,    -- drop-oldest | reject-new | memory-full
    count      bigint NOT NULL,
    seq_first  bigint,
    seq_last   bigint,
    total      bigint NOT NULL,
    PRIMARY KEY (edge_id, epoch, seq)
);
