-- Competitions (issue 9): events with a frozen exercise + rubric, heats across sites,
-- competitors with bibs, the coordinated start of each heat, the automated referee's marks
-- with the identity and digest of their inputs, judges' marks, appeals, signed results and an
-- append-only audit trail. Described in docs/competitions.md.
-- Like sessions/results (0001), rows reference each other by id without foreign keys to the
-- time-series tables, so a site's spool draining late never blocks on competition rows.

CREATE TABLE competitions (
    competition_id   text PRIMARY KEY,
    name             text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'draft'
        CHECK (state IN ('draft', 'open', 'closed', 'published')),
    -- the rules the leaderboard applies (judgement weight, tie-break), frozen when opened
    rules            jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    opened_at        timestamptz
);

-- An event: one exercise scored with one rubric version, copied here when the competition
-- opens (the rubric document and its SHA-256), so later edits of the rubric table or of the
-- exercise library never change what the competition is judged by.
CREATE TABLE competition_events (
    competition_id   text NOT NULL REFERENCES competitions (competition_id),
    event_id         text NOT NULL,
    exercise_id      text NOT NULL,
    rubric_id        text NOT NULL,
    rubric_version   integer NOT NULL,
    rubric           jsonb,                             -- frozen copy (NULL until opened)
    rubric_sha256    text,
    kernel_version   text,
    sample_rate_hz   double precision NOT NULL DEFAULT 120,
    duration_s       double precision,
    frozen_at        timestamptz,
    PRIMARY KEY (competition_id, event_id)
);

CREATE TABLE competitors (
    competition_id   text NOT NULL REFERENCES competitions (competition_id),
    competitor_id    text NOT NULL,                     -- pseudonymous trainee id
    bib              integer NOT NULL CHECK (bib > 0),
    site_id          text NOT NULL,
    PRIMARY KEY (competition_id, competitor_id),
    UNIQUE (competition_id, bib)
);

CREATE TABLE competition_heats (
    competition_id   text NOT NULL REFERENCES competitions (competition_id),
    heat_id          text NOT NULL,
    event_id         text NOT NULL,
    state            text NOT NULL DEFAULT 'planned'
        CHECK (state IN ('planned', 'started', 'finished', 'failed')),
    planned_start    timestamptz,
    agreed_start     timestamptz,                       -- coordinator clock
    tolerance_ms     double precision,
    start_spread_ms  double precision,                  -- max - min start over started rigs
    detail           jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (competition_id, heat_id),
    FOREIGN KEY (competition_id, event_id) REFERENCES competition_events (competition_id, event_id)
);

-- Per heat and site: the clock check each controller ran before the start.
CREATE TABLE competition_heat_sites (
    competition_id   text NOT NULL,
    heat_id          text NOT NULL,
    site_id          text NOT NULL,
    clock_offset_ms  double precision,                  -- site controller clock - coordinator
    clock_rtt_ms     double precision,
    rigs_ready       integer NOT NULL DEFAULT 0,
    rigs_failed      integer NOT NULL DEFAULT 0,
    detail           jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (competition_id, heat_id, site_id),
    FOREIGN KEY (competition_id, heat_id) REFERENCES competition_heats (competition_id, heat_id)
);

-- One row per competitor in a heat: where they competed and what happened at the start.
-- A rig that failed or started late keeps its row with the reason (never silently dropped).
CREATE TABLE heat_entries (
    competition_id   text NOT NULL,
    heat_id          text NOT NULL,
    competitor_id    text NOT NULL,
    site_id          text NOT NULL,
    rig_id           text NOT NULL,
    session_id       uuid,
    start_state      text NOT NULL DEFAULT 'planned'
        CHECK (start_state IN ('planned', 'started', 'late', 'failed')),
    reason           text NOT NULL DEFAULT '',
    start_time       timestamptz,                       -- coordinator clock
    start_offset_ms  double precision,                  -- start_time - agreed start
    PRIMARY KEY (competition_id, heat_id, competitor_id),
    FOREIGN KEY (competition_id, heat_id) REFERENCES competition_heats (competition_id, heat_id)
);
CREATE INDEX heat_entries_session_idx ON heat_entries (session_id);

-- The automated referee: every mark with the exact identity of what it was computed from
-- (session, sequence range, frame count, SHA-256 over the stored frames, rubric version and
-- digest, kernel version). purpose 'official' is the frozen mark; 'appeal' rows are
-- re-computations under another rubric and never replace it.
CREATE TABLE referee_marks (
    mark_id          bigserial PRIMARY KEY,
    competition_id   text NOT NULL,
    event_id         text NOT NULL,
    heat_id          text NOT NULL,
    competitor_id    text NOT NULL,
    site_id          text NOT NULL,
    session_id       uuid NOT NULL,
    purpose          text NOT NULL DEFAULT 'official' CHECK (purpose IN ('official', 'appeal')),
    rubric_id        text NOT NULL,
    rubric_version   integer NOT NULL,
    rubric_sha256    text NOT NULL,
    kernel_version   text NOT NULL,
    seq_lo           bigint NOT NULL,
    seq_hi           bigint NOT NULL,
    frames           bigint NOT NULL,
    data_sha256      text NOT NULL,
    mark_sha256      text NOT NULL,                     -- over data + rubric + kernel digests
    score            double precision NOT NULL,
    passed           boolean NOT NULL,
    result           jsonb NOT NULL,                    -- the full breakdown as computed
    result_text      text NOT NULL,                     -- its canonical JSON, byte for byte
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX referee_marks_official_idx
    ON referee_marks (competition_id, event_id, competitor_id) WHERE purpose = 'official';

-- Judgement marks: each judge independently, 0..3 per aspect (WorldSkills); never overwritten
-- once the result is published (a correction before that replaces the judge's own mark).
CREATE TABLE judge_marks (
    competition_id   text NOT NULL,
    event_id         text NOT NULL,
    competitor_id    text NOT NULL,
    aspect           text NOT NULL,
    judge_id         text NOT NULL,
    mark             smallint NOT NULL CHECK (mark BETWEEN 0 AND 3),
    entered_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (competition_id, event_id, competitor_id, aspect, judge_id)
);

CREATE TABLE appeals (
    appeal_id        bigserial PRIMARY KEY,
    competition_id   text NOT NULL,
    event_id         text NOT NULL,
    competitor_id    text NOT NULL,
    reason           text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'rescored'
        CHECK (state IN ('rescored', 'upheld', 'rejected')),
    official_mark_id bigint NOT NULL,
    appeal_mark_id   bigint NOT NULL,
    official_score   double precision NOT NULL,
    appeal_score     double precision NOT NULL,
    difference       jsonb NOT NULL DEFAULT '{}',       -- per metric/component deltas
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Published (frozen) results: the canonical JSON that was signed, and the signature.
CREATE TABLE competition_results (
    competition_id   text NOT NULL,
    event_id         text NOT NULL,
    payload_text     text NOT NULL,
    algorithm        text NOT NULL,                     -- e.g. hmac-sha256
    key_id           text NOT NULL,
    signature        text NOT NULL,                     -- hex
    published_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (competition_id, event_id)
);

CREATE TABLE competition_audit (
    audit_id         bigserial PRIMARY KEY,
    time             timestamptz NOT NULL DEFAULT now(),
    competition_id   text NOT NULL,
    actor            text NOT NULL DEFAULT '',
    action           text NOT NULL,
    detail           jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX competition_audit_idx ON competition_audit (competition_id, time);
