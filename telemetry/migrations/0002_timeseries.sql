-- Hypertables. Chunk intervals follow the measured row rates (docs/telemetry.md):
-- pose_frames: one row per frame, 120 rows/s per rig, ~445 bytes per row with its indexes;
-- a lab of 40 rigs writes ~7.7 GB/h, so 30-minute chunks (~3.9 GB) keep the chunk being
-- written (plus its indexes) inside a quarter of a 16 GB server's memory.

-- One row per frame (all trackers of one sample). Measured on this machine with binary COPY
-- into a hypertable: 0.68M poses/s vs 0.19M for one row per tracker, 61 MB vs 137 MB per
-- 1M poses. poses is a 2-D real array [tracker][component], components 1..7 =
-- px, py, pz (metres), qw, qx, qy, qz (unit quaternion). valid_mask bit i = tracker i valid.
CREATE TABLE pose_frames (
    time        timestamptz NOT NULL,        -- corrected to the controller's clock
    rig_time    double precision NOT NULL,   -- the rig's own clock, seconds
    session_id  uuid NOT NULL,
    rig_id      text NOT NULL,
    seq         bigint NOT NULL,             -- per-session frame sequence number, from 0
    poses       real[] NOT NULL,
    analog      real[] NOT NULL,             -- analog channels (trigger, wire feed, ...)
    valid_mask  integer NOT NULL
);
SELECT create_hypertable('pose_frames', 'time', chunk_time_interval => interval '30 minutes');
CREATE INDEX pose_frames_session_idx ON pose_frames (session_id, time DESC);

-- Per-tracker view for Grafana and research queries.
CREATE VIEW pose_samples AS
SELECT f.time, f.rig_time, f.session_id, f.rig_id, f.seq, t.tracker,
       f.poses[t.tracker + 1][1] AS px, f.poses[t.tracker + 1][2] AS py,
       f.poses[t.tracker + 1][3] AS pz, f.poses[t.tracker + 1][4] AS qw,
       f.poses[t.tracker + 1][5] AS qx, f.poses[t.tracker + 1][6] AS qy,
       f.poses[t.tracker + 1][7] AS qz,
       ((f.valid_mask >> t.tracker) & 1) = 1 AS valid
FROM pose_frames f
CROSS JOIN LATERAL generate_series(0, array_length(f.poses, 1) - 1) AS t (tracker);

-- Frames per second per session, maintained by the writer in the same transaction as the
-- frames themselves (so it counts each stored frame exactly once). Sample-rate and
-- last-sample panels read this instead of scanning pose_frames.
CREATE TABLE pose_rate_1s (
    bucket      timestamptz NOT NULL,
    session_id  uuid NOT NULL,
    rig_id      text NOT NULL,
    frames      integer NOT NULL,
    valid_frames integer NOT NULL,               -- frames with every tracker valid
    last_seq    bigint NOT NULL,
    last_time   timestamptz NOT NULL,
    PRIMARY KEY (session_id, bucket)
);
SELECT create_hypertable('pose_rate_1s', 'bucket', chunk_time_interval => interval '1 day');
CREATE INDEX pose_rate_1s_rig_idx ON pose_rate_1s (rig_id, bucket DESC);

-- Stored sequence ranges per (stream, session), written in the same transaction as the rows.
-- This is what makes resends idempotent without a unique index on the hot hypertable.
CREATE TABLE ingest_ranges (
    stream      text NOT NULL,                   -- 'pose' or 'score'
    session_id  uuid NOT NULL,
    seq_lo      bigint NOT NULL,
    seq_hi      bigint NOT NULL,
    PRIMARY KEY (stream, session_id, seq_lo),
    CHECK (seq_lo <= seq_hi)
);

-- Windowed scores: one row per scoring window; the per-parameter values are in
-- score_window_params (long layout: one Grafana query draws any parameter with its band).
CREATE TABLE score_windows (
    time               timestamptz NOT NULL,     -- end of the window
    site_id            text NOT NULL,
    session_id         uuid NOT NULL,
    rig_id             text NOT NULL,
    window_idx         integer NOT NULL,         -- per-session, from 0
    seq_hi             bigint NOT NULL,          -- last pose seq covered by this window
    progress           real NOT NULL,            -- 0..1 through the expert reference
    alignment_distance real NOT NULL,            -- running DTW distance to the reference
    window_score       real NOT NULL             -- 0..100
);
SELECT create_hypertable('score_windows', 'time', chunk_time_interval => interval '1 day');
CREATE INDEX score_windows_session_idx ON score_windows (session_id, time DESC);
CREATE INDEX score_windows_site_idx ON score_windows (site_id, time DESC);

CREATE TABLE score_window_params (
    time            timestamptz NOT NULL,
    session_id      uuid NOT NULL,
    window_idx      integer NOT NULL,
    param           text NOT NULL,
    mean            real NOT NULL,
    std             real NOT NULL,
    frac_in_window  real NOT NULL,               -- 0..1 of the window inside [lo, hi]
    ideal           real NOT NULL,               -- tolerance band as scored
    lo              real NOT NULL,
    hi              real NOT NULL
);
SELECT create_hypertable('score_window_params', 'time',
                         chunk_time_interval => interval '1 day');
CREATE INDEX score_window_params_session_idx
    ON score_window_params (session_id, param, time DESC);

CREATE TABLE cues (
    time        timestamptz NOT NULL,
    site_id     text NOT NULL,
    session_id  uuid NOT NULL,
    rig_id      text NOT NULL,
    param       text NOT NULL DEFAULT '',        -- parameter the cue is about ('' if none)
    kind        text NOT NULL,                   -- e.g. too_high, too_low, info
    severity    smallint NOT NULL DEFAULT 1,
    value       real,
    message     text NOT NULL DEFAULT ''
);
SELECT create_hypertable('cues', 'time', chunk_time_interval => interval '7 days');
CREATE UNIQUE INDEX cues_dedup_idx ON cues (session_id, time, param, kind);

CREATE TABLE session_events (
    time        timestamptz NOT NULL,
    site_id     text NOT NULL,
    session_id  uuid NOT NULL,
    rig_id      text NOT NULL DEFAULT '',
    kind        text NOT NULL,                   -- e.g. state:running, rig_lost, note
    detail      jsonb NOT NULL DEFAULT '{}'
);
SELECT create_hypertable('session_events', 'time', chunk_time_interval => interval '7 days');
CREATE UNIQUE INDEX session_events_dedup_idx ON session_events (session_id, time, kind);

-- Operations counters/gauges from the controller and the writer: rigs online, sample rates,
-- ingest lag, spool size, dropped/NACKed frames by kind. Long layout: name + label.
CREATE TABLE ops_metrics (
    time        timestamptz NOT NULL,
    site_id     text NOT NULL,
    component   text NOT NULL,                   -- controller, writer, transport, ...
    rig_id      text NOT NULL DEFAULT '',
    name        text NOT NULL,
    label       text NOT NULL DEFAULT '',        -- e.g. the kind of a dropped frame
    value       double precision NOT NULL
);
SELECT create_hypertable('ops_metrics', 'time', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX ops_metrics_dedup_idx
    ON ops_metrics (name, site_id, component, rig_id, label, time DESC);

-- Batches the writer could not store because the rows themselves were rejected (a data error,
-- not an outage): kept here with the reason instead of blocking the spool forever.
CREATE TABLE ingest_rejects (
    time        timestamptz NOT NULL DEFAULT now(),
    kind        integer NOT NULL,
    error       text NOT NULL,
    payload     bytea NOT NULL
);

-- Retention and compression settings per hypertable (telemetry.policies applies them).
CREATE TABLE retention_settings (
    hypertable      text PRIMARY KEY,
    keep            interval,                    -- drop chunks older than this (NULL: keep)
    compress_after  interval                     -- licensed edition only
);
INSERT INTO retention_settings (hypertable, keep, compress_after) VALUES
    ('pose_frames', interval '180 days', interval '1 day'),
    ('pose_rate_1s', NULL, interval '7 days'),
    ('score_windows', NULL, interval '7 days'),
    ('score_window_params', NULL, interval '7 days'),
    ('cues', NULL, NULL),
    ('session_events', NULL, NULL),
    ('ops_metrics', interval '90 days', interval '7 days');

-- Per-minute rollup of the frame rate. On the Apache edition this plain view over the
-- writer-maintained per-second table is the rollup; where timescaledb.license = 'timescale',
-- telemetry.policies replaces it with a continuous aggregate of the same name and columns.
CREATE VIEW pose_rate_1m AS
SELECT time_bucket(interval '1 minute', bucket) AS bucket, session_id, rig_id,
       sum(frames)::bigint AS frames, sum(valid_frames)::bigint AS valid_frames,
       max(last_seq) AS last_seq, max(last_time) AS last_time
FROM pose_rate_1s
GROUP BY 1, 2, 3;
