"""Table and column names of the telemetry schema, for code that writes SQL against it.

The dashboards import these so that a renamed column breaks a test rather than a live panel;
`tests/telemetry/test_schema.py` checks that every name here exists in the migrated database
and that no column is missing from here. Keep in step with `telemetry/migrations/*.sql`.
"""

from __future__ import annotations

from typing import Final


class Table:
    """Base of the table classes below: ``TABLE`` is the relation, other attributes columns."""

    TABLE: str = ""

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """Column names in table order."""
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if key.isupper() or key.startswith("_") or not isinstance(value, str):
                    continue
                names.append(value)
        return tuple(names)


class Classes(Table):
    """Classes (cohorts) of trainees."""

    TABLE = "classes"
    class_id: Final = "class_id"
    site_id: Final = "site_id"
    name: Final = "name"
    instructor: Final = "instructor"
    created_at: Final = "created_at"


class Cues(Table):
    """Hypertable: feedback cues sent to rigs."""

    TABLE = "cues"
    time: Final = "time"
    site_id: Final = "site_id"
    session_id: Final = "session_id"
    rig_id: Final = "rig_id"
    param: Final = "param"
    kind: Final = "kind"
    severity: Final = "severity"
    value: Final = "value"
    message: Final = "message"


class Exercises(Table):
    """Exercises (scenario geometry; the rubric is versioned separately)."""

    TABLE = "exercises"
    exercise_id: Final = "exercise_id"
    family: Final = "family"
    name: Final = "name"
    description: Final = "description"
    geometry: Final = "geometry"
    created_at: Final = "created_at"


class IngestRanges(Table):
    """Stored seq ranges per (stream, session): the idempotence record."""

    TABLE = "ingest_ranges"
    stream: Final = "stream"
    session_id: Final = "session_id"
    seq_lo: Final = "seq_lo"
    seq_hi: Final = "seq_hi"


class IngestRejects(Table):
    """Batches rejected by the database (data errors), kept with the reason."""

    TABLE = "ingest_rejects"
    time: Final = "time"
    kind: Final = "kind"
    error: Final = "error"
    payload: Final = "payload"


class OpsMetrics(Table):
    """Hypertable: operations counters/gauges (rigs online, lag, spool, drops)."""

    TABLE = "ops_metrics"
    time: Final = "time"
    site_id: Final = "site_id"
    component: Final = "component"
    rig_id: Final = "rig_id"
    name: Final = "name"
    label: Final = "label"
    value: Final = "value"


class PoseFrames(Table):
    """Hypertable: one row per frame; poses real[tracker][px,py,pz,qx,qy,qz,qw]."""

    TABLE = "pose_frames"
    time: Final = "time"
    rig_time: Final = "rig_time"
    session_id: Final = "session_id"
    rig_id: Final = "rig_id"
    seq: Final = "seq"
    poses: Final = "poses"
    analog: Final = "analog"
    valid_mask: Final = "valid_mask"


class PoseRate1M(Table):
    """Per-minute rollup (view on Apache, continuous aggregate where licensed)."""

    TABLE = "pose_rate_1m"
    bucket: Final = "bucket"
    session_id: Final = "session_id"
    rig_id: Final = "rig_id"
    frames: Final = "frames"
    valid_frames: Final = "valid_frames"
    last_seq: Final = "last_seq"
    last_time: Final = "last_time"


class PoseRate1S(Table):
    """Hypertable: frames per second per session, maintained by the writer."""

    TABLE = "pose_rate_1s"
    bucket: Final = "bucket"
    session_id: Final = "session_id"
    rig_id: Final = "rig_id"
    frames: Final = "frames"
    valid_frames: Final = "valid_frames"
    last_seq: Final = "last_seq"
    last_time: Final = "last_time"


class PoseSamples(Table):
    """View: one row per tracker and frame (for Grafana)."""

    TABLE = "pose_samples"
    time: Final = "time"
    rig_time: Final = "rig_time"
    session_id: Final = "session_id"
    rig_id: Final = "rig_id"
    seq: Final = "seq"
    tracker: Final = "tracker"
    px: Final = "px"
    py: Final = "py"
    pz: Final = "pz"
    qx: Final = "qx"
    qy: Final = "qy"
    qz: Final = "qz"
    qw: Final = "qw"
    valid: Final = "valid"


class ResultMetrics(Table):
    """Per-metric breakdown of a result, one row per metric."""

    TABLE = "result_metrics"
    session_id: Final = "session_id"
    rubric_id: Final = "rubric_id"
    rubric_version: Final = "rubric_version"
    metric: Final = "metric"
    value: Final = "value"
    score: Final = "score"
    weight: Final = "weight"
    time_in_window: Final = "time_in_window"
    ideal: Final = "ideal"
    lo: Final = "lo"
    hi: Final = "hi"


class Results(Table):
    """Final result per session and rubric version."""

    TABLE = "results"
    session_id: Final = "session_id"
    rubric_id: Final = "rubric_id"
    rubric_version: Final = "rubric_version"
    site_id: Final = "site_id"
    trainee_id: Final = "trainee_id"
    exercise_id: Final = "exercise_id"
    final_score: Final = "final_score"
    passed: Final = "passed"
    level: Final = "level"
    weakest_parameter: Final = "weakest_parameter"
    alignment_distance: Final = "alignment_distance"
    components: Final = "components"
    kernel_version: Final = "kernel_version"
    scored_at: Final = "scored_at"


class RetentionSettings(Table):
    """Retention/compression settings per hypertable."""

    TABLE = "retention_settings"
    hypertable: Final = "hypertable"
    keep: Final = "keep"
    compress_after: Final = "compress_after"


class Rigs(Table):
    """Rigs per site."""

    TABLE = "rigs"
    site_id: Final = "site_id"
    rig_id: Final = "rig_id"
    name: Final = "name"
    n_trackers: Final = "n_trackers"
    analog_channels: Final = "analog_channels"
    sample_rate_hz: Final = "sample_rate_hz"
    created_at: Final = "created_at"


class Rubrics(Table):
    """Versioned rubrics with the full rubric document."""

    TABLE = "rubrics"
    rubric_id: Final = "rubric_id"
    version: Final = "version"
    exercise_id: Final = "exercise_id"
    rubric: Final = "rubric"
    pass_mark: Final = "pass_mark"
    created_at: Final = "created_at"


class SchemaMigrations(Table):
    """Applied migrations."""

    TABLE = "schema_migrations"
    version: Final = "version"
    name: Final = "name"
    checksum: Final = "checksum"
    applied_at: Final = "applied_at"


class ScoreWindowParams(Table):
    """Hypertable: per window and parameter: mean/std/fraction in band, band."""

    TABLE = "score_window_params"
    time: Final = "time"
    session_id: Final = "session_id"
    window_idx: Final = "window_idx"
    param: Final = "param"
    mean: Final = "mean"
    std: Final = "std"
    frac_in_window: Final = "frac_in_window"
    ideal: Final = "ideal"
    lo: Final = "lo"
    hi: Final = "hi"


class ScoreWindows(Table):
    """Hypertable: one row per scoring window."""

    TABLE = "score_windows"
    time: Final = "time"
    site_id: Final = "site_id"
    session_id: Final = "session_id"
    rig_id: Final = "rig_id"
    window_idx: Final = "window_idx"
    seq_hi: Final = "seq_hi"
    progress: Final = "progress"
    alignment_distance: Final = "alignment_distance"
    window_score: Final = "window_score"


class SessionEvents(Table):
    """Hypertable: session state changes and other events."""

    TABLE = "session_events"
    time: Final = "time"
    site_id: Final = "site_id"
    session_id: Final = "session_id"
    rig_id: Final = "rig_id"
    kind: Final = "kind"
    detail: Final = "detail"


class Sessions(Table):
    """One training session (uuid from the controller), state and data-quality counters."""

    TABLE = "sessions"
    session_id: Final = "session_id"
    site_id: Final = "site_id"
    rig_id: Final = "rig_id"
    trainee_id: Final = "trainee_id"
    class_id: Final = "class_id"
    exercise_id: Final = "exercise_id"
    rubric_id: Final = "rubric_id"
    rubric_version: Final = "rubric_version"
    state: Final = "state"
    reason: Final = "reason"
    created_at: Final = "created_at"
    started_at: Final = "started_at"
    ended_at: Final = "ended_at"
    updated_at: Final = "updated_at"
    frames_expected: Final = "frames_expected"
    frames_received: Final = "frames_received"
    frames_interpolated: Final = "frames_interpolated"
    frames_duplicate: Final = "frames_duplicate"
    frames_nacked: Final = "frames_nacked"
    gap_count: Final = "gap_count"
    clock_offset_ms: Final = "clock_offset_ms"
    clock_rtt_ms: Final = "clock_rtt_ms"
    competition_id: Final = "competition_id"
    heat_id: Final = "heat_id"


class Sites(Table):
    """Sites (schools, labs, competition halls); every site-produced row carries site_id."""

    TABLE = "sites"
    site_id: Final = "site_id"
    name: Final = "name"
    timezone: Final = "timezone"
    clock_offset_ms: Final = "clock_offset_ms"
    created_at: Final = "created_at"


class TraineeIdentities(Table):
    """Real names and national ids; NOT readable by the dashboard role."""

    TABLE = "trainee_identities"
    trainee_id: Final = "trainee_id"
    real_name: Final = "real_name"
    national_id: Final = "national_id"
    created_at: Final = "created_at"


class Trainees(Table):
    """Pseudonymous trainees; readable by the dashboard role."""

    TABLE = "trainees"
    trainee_id: Final = "trainee_id"
    site_id: Final = "site_id"
    class_id: Final = "class_id"
    created_at: Final = "created_at"


class Appeals(Table):
    """Issue 9: appeals (re-scores that never replace the official mark)."""

    TABLE = "appeals"
    appeal_id: Final = "appeal_id"
    competition_id: Final = "competition_id"
    event_id: Final = "event_id"
    competitor_id: Final = "competitor_id"
    reason: Final = "reason"
    state: Final = "state"
    official_mark_id: Final = "official_mark_id"
    appeal_mark_id: Final = "appeal_mark_id"
    official_score: Final = "official_score"
    appeal_score: Final = "appeal_score"
    difference: Final = "difference"
    created_at: Final = "created_at"


class CompetitionAudit(Table):
    """Issue 9: append-only audit trail."""

    TABLE = "competition_audit"
    audit_id: Final = "audit_id"
    time: Final = "time"
    competition_id: Final = "competition_id"
    actor: Final = "actor"
    action: Final = "action"
    detail: Final = "detail"


class CompetitionEvents(Table):
    """Issue 9: an event, exercise + frozen rubric copy."""

    TABLE = "competition_events"
    competition_id: Final = "competition_id"
    event_id: Final = "event_id"
    exercise_id: Final = "exercise_id"
    rubric_id: Final = "rubric_id"
    rubric_version: Final = "rubric_version"
    rubric: Final = "rubric"
    rubric_sha256: Final = "rubric_sha256"
    kernel_version: Final = "kernel_version"
    sample_rate_hz: Final = "sample_rate_hz"
    duration_s: Final = "duration_s"
    frozen_at: Final = "frozen_at"


class CompetitionHeatSites(Table):
    """Issue 9: per heat and site, the clock check before the start."""

    TABLE = "competition_heat_sites"
    competition_id: Final = "competition_id"
    heat_id: Final = "heat_id"
    site_id: Final = "site_id"
    clock_offset_ms: Final = "clock_offset_ms"
    clock_rtt_ms: Final = "clock_rtt_ms"
    rigs_ready: Final = "rigs_ready"
    rigs_failed: Final = "rigs_failed"
    detail: Final = "detail"


class CompetitionHeats(Table):
    """Issue 9: heats and their coordinated start."""

    TABLE = "competition_heats"
    competition_id: Final = "competition_id"
    heat_id: Final = "heat_id"
    event_id: Final = "event_id"
    state: Final = "state"
    planned_start: Final = "planned_start"
    agreed_start: Final = "agreed_start"
    tolerance_ms: Final = "tolerance_ms"
    start_spread_ms: Final = "start_spread_ms"
    detail: Final = "detail"


class CompetitionResults(Table):
    """Issue 9: published results with their signature."""

    TABLE = "competition_results"
    competition_id: Final = "competition_id"
    event_id: Final = "event_id"
    payload_text: Final = "payload_text"
    algorithm: Final = "algorithm"
    key_id: Final = "key_id"
    signature: Final = "signature"
    published_at: Final = "published_at"


class Competitions(Table):
    """Issue 9: a competition and its rules."""

    TABLE = "competitions"
    competition_id: Final = "competition_id"
    name: Final = "name"
    state: Final = "state"
    rules: Final = "rules"
    created_at: Final = "created_at"
    opened_at: Final = "opened_at"


class Competitors(Table):
    """Issue 9: pseudonymous competitors with bib numbers."""

    TABLE = "competitors"
    competition_id: Final = "competition_id"
    competitor_id: Final = "competitor_id"
    bib: Final = "bib"
    site_id: Final = "site_id"


class HeatEntries(Table):
    """Issue 9: a competitor in a heat: rig, session, start state and reason."""

    TABLE = "heat_entries"
    competition_id: Final = "competition_id"
    heat_id: Final = "heat_id"
    competitor_id: Final = "competitor_id"
    site_id: Final = "site_id"
    rig_id: Final = "rig_id"
    session_id: Final = "session_id"
    start_state: Final = "start_state"
    reason: Final = "reason"
    start_time: Final = "start_time"
    start_offset_ms: Final = "start_offset_ms"


class JudgeMarks(Table):
    """Issue 9: judges' marks 0..3 per aspect."""

    TABLE = "judge_marks"
    competition_id: Final = "competition_id"
    event_id: Final = "event_id"
    competitor_id: Final = "competitor_id"
    aspect: Final = "aspect"
    judge_id: Final = "judge_id"
    mark: Final = "mark"
    entered_at: Final = "entered_at"


class RefereeMarks(Table):
    """Issue 9: automated marks with the digests of their inputs."""

    TABLE = "referee_marks"
    mark_id: Final = "mark_id"
    competition_id: Final = "competition_id"
    event_id: Final = "event_id"
    heat_id: Final = "heat_id"
    competitor_id: Final = "competitor_id"
    site_id: Final = "site_id"
    session_id: Final = "session_id"
    purpose: Final = "purpose"
    rubric_id: Final = "rubric_id"
    rubric_version: Final = "rubric_version"
    rubric_sha256: Final = "rubric_sha256"
    kernel_version: Final = "kernel_version"
    seq_lo: Final = "seq_lo"
    seq_hi: Final = "seq_hi"
    frames: Final = "frames"
    data_sha256: Final = "data_sha256"
    mark_sha256: Final = "mark_sha256"
    score: Final = "score"
    passed: Final = "passed"
    result: Final = "result"
    result_text: Final = "result_text"
    created_at: Final = "created_at"


ALL: Final[tuple[type[Table], ...]] = (
    Classes,
    Cues,
    Exercises,
    IngestRanges,
    IngestRejects,
    OpsMetrics,
    PoseFrames,
    PoseRate1M,
    PoseRate1S,
    PoseSamples,
    ResultMetrics,
    Results,
    RetentionSettings,
    Rigs,
    Rubrics,
    SchemaMigrations,
    ScoreWindowParams,
    ScoreWindows,
    SessionEvents,
    Sessions,
    Sites,
    TraineeIdentities,
    Trainees,
    Appeals,
    CompetitionAudit,
    CompetitionEvents,
    CompetitionHeatSites,
    CompetitionHeats,
    CompetitionResults,
    Competitions,
    Competitors,
    HeatEntries,
    JudgeMarks,
    RefereeMarks,
)
"""Every table and view of the schema."""


HYPERTABLES: Final[tuple[type[Table], ...]] = (
    PoseFrames,
    PoseRate1S,
    ScoreWindows,
    ScoreWindowParams,
    Cues,
    SessionEvents,
    OpsMetrics,
)
VIEWS: Final[tuple[type[Table], ...]] = (PoseSamples, PoseRate1M)

POSE_COMPONENTS: Final = ("px", "py", "pz", "qx", "qy", "qz", "qw")
"""Order of the 7 values per tracker in ``pose_frames.poses`` (positions in millimetres as sent,
unit quaternion scalar last): the wire protocol's order (docs/protocol.md §6.2)."""

SESSION_STATES: Final = (
    "assigned", "armed", "running", "stopping", "finished", "aborted", "failed", "interrupted",
)  # fmt: skip
"""The controller's session states (migration 0004); the CHECK on ``sessions.state``."""
ACTIVE_SESSION_STATES: Final = ("armed", "running", "stopping", "interrupted")
"""States the live class view shows."""

COMPETITION_TABLES: Final[tuple[type[Table], ...]] = (
    Appeals,
    CompetitionAudit,
    CompetitionEvents,
    CompetitionHeatSites,
    CompetitionHeats,
    CompetitionResults,
    Competitions,
    Competitors,
    HeatEntries,
    JudgeMarks,
    RefereeMarks,
)
"""Issue 9's tables (migration 0010; written by telemetry/competition.py)."""

IDENTITY_TABLES: Final[tuple[type[Table], ...]] = (TraineeIdentities,)
"""Tables the dashboard role must not read."""

# Metric names the writer records in ops_metrics itself (the controller adds its own).
METRIC_INGEST_LAG_MS: Final = "ingest_lag_ms"
METRIC_SPOOL_BYTES: Final = "spool_pending_bytes"
METRIC_SPOOL_RECORDS: Final = "spool_pending_records"
METRIC_ROWS_WRITTEN: Final = "rows_written"
METRIC_QUEUE_DEPTH: Final = "writer_queue_depth"
# Names the controller is expected to use (documented in docs/telemetry.md).
METRIC_RIGS_ONLINE: Final = "rigs_online"
METRIC_SAMPLE_RATE_HZ: Final = "sample_rate_hz"
METRIC_FRAMES_DROPPED: Final = "frames_dropped"  # label = kind
METRIC_FRAMES_NACKED: Final = "frames_nacked"  # label = kind
METRIC_CLOCK_OFFSET_MS: Final = "clock_offset_ms"

DASHBOARD_ROLE: Final = "grafana_reader"
"""Read-only role Grafana logs in as: every table and view except the identity tables."""
WRITER_ROLE: Final = "labctl_writer"
"""Role of the ingest writer: insert/update the telemetry, no access to identities."""
