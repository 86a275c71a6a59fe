"""Read queries the rest of the system needs (CLI, API, re-scoring, exports, dashboards checks).

Every function opens its own short connection from a DSN, so callers outside ``telemetry`` never
touch psycopg.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from telemetry import copybin
from telemetry.ranges import RangeSet
from telemetry.schema import ACTIVE_SESSION_STATES
from telemetry.store import POSE_STREAM, pose_columns


def run_sql(
    dsn: str, query: str, *, timeout_ms: int = 10_000
) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """Run one statement in a READ ONLY transaction with a statement timeout.

    Returns ``([(column name, PostgreSQL type name), ...], rows)``; type names as in
    ``pg_type.typname`` (``timestamptz``, ``float8``, ``text``, ``_float4`` for arrays...).
    For ``labctl dashboards check``, which may not import psycopg itself.
    """
    with psycopg.connect(dsn) as conn:
        conn.read_only = True
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_ms)),))
            cur.execute(query.encode())
            desc = cur.description or []
            rows = cur.fetchall() if cur.description is not None else []
            oids = sorted({d.type_code for d in desc})
            names: dict[int, str] = {}
            if oids:
                for oid, typname in cur.execute(
                    "SELECT oid::int, typname::text FROM pg_type WHERE oid = ANY(%s)", (oids,)
                ).fetchall():
                    names[int(oid)] = str(typname)
        conn.rollback()
    return [(d.name, names.get(d.type_code, str(d.type_code))) for d in desc], rows


@dataclass(frozen=True)
class MetricRow:
    """One metric of a result's breakdown."""

    metric: str
    value: float | None
    score: float | None
    weight: float | None
    time_in_window: float | None
    ideal: float | None
    lo: float | None
    hi: float | None


@dataclass(frozen=True)
class SessionSummary:
    """A session with its official result (the session's own rubric version) and data quality."""

    session_id: uuid.UUID
    site_id: str
    rig_id: str
    trainee_id: str | None
    class_id: str | None
    exercise_id: str | None
    rubric_id: str | None
    rubric_version: int | None
    state: str
    started_at: datetime | None
    ended_at: datetime | None
    final_score: float | None
    passed: bool | None
    level: str | None
    weakest_parameter: str | None
    components: dict[str, Any]
    metrics: list[MetricRow]
    frames_stored: int
    stored_ranges: list[tuple[int, int]]
    frames_interpolated: int
    gap_count: int
    clock_offset_ms: float | None
    other_results: list[tuple[str, int, float]] = field(default_factory=list)
    """(rubric id, version, score) of re-scorings under other rubric versions."""


def stored_ranges(dsn: str, session_id: uuid.UUID, stream: str = POSE_STREAM) -> RangeSet:
    """The sequence ranges stored for a session."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT seq_lo, seq_hi FROM ingest_ranges WHERE stream = %s AND session_id = %s",
            (stream, session_id),
        ).fetchall()
    return RangeSet((int(lo), int(hi)) for lo, hi in rows)


def session_summary(dsn: str, session_id: uuid.UUID) -> SessionSummary | None:
    """The session, its result with per-metric breakdown, and data-quality figures."""
    with psycopg.connect(dsn) as conn:
        s = conn.execute(
            "SELECT site_id, rig_id, trainee_id, class_id, exercise_id, rubric_id, rubric_version, "
            "state, started_at, ended_at, frames_interpolated, gap_count, clock_offset_ms "
            "FROM sessions WHERE session_id = %s",
            (session_id,),
        ).fetchone()
        if s is None:
            return None
        results = conn.execute(
            "SELECT rubric_id, rubric_version, final_score, passed, level, weakest_parameter, "
            "components FROM results WHERE session_id = %s ORDER BY scored_at",
            (session_id,),
        ).fetchall()
        official = next((r for r in results if (r[0], r[1]) == (s[5], s[6])), None)
        if official is None and results:
            official = results[0]
        metrics: list[MetricRow] = []
        if official is not None:
            metrics = [
                MetricRow(*m)
                for m in conn.execute(
                    "SELECT metric, value, score, weight, time_in_window, ideal, lo, hi "
                    "FROM result_metrics WHERE session_id = %s AND rubric_id = %s "
                    "AND rubric_version = %s ORDER BY metric",
                    (session_id, official[0], official[1]),
                ).fetchall()
            ]
        ranges = conn.execute(
            "SELECT seq_lo, seq_hi FROM ingest_ranges WHERE stream = %s AND session_id = %s ORDER BY seq_lo",
            (POSE_STREAM, session_id),
        ).fetchall()
    return SessionSummary(
        session_id=session_id,
        site_id=s[0],
        rig_id=s[1],
        trainee_id=s[2],
        class_id=s[3],
        exercise_id=s[4],
        rubric_id=s[5],
        rubric_version=s[6],
        state=s[7],
        started_at=s[8],
        ended_at=s[9],
        final_score=official[2] if official else None,
        passed=official[3] if official else None,
        level=official[4] if official else None,
        weakest_parameter=official[5] if official else None,
        components=dict(official[6]) if official else {},
        metrics=metrics,
        frames_stored=sum(int(hi) - int(lo) + 1 for lo, hi in ranges),
        stored_ranges=[(int(lo), int(hi)) for lo, hi in ranges],
        frames_interpolated=s[10],
        gap_count=s[11],
        clock_offset_ms=s[12],
        other_results=[(r[0], r[1], r[2]) for r in results if r is not official],
    )


@dataclass(frozen=True)
class HistoryRow:
    """One session in a trainee's history."""

    session_id: uuid.UUID
    exercise_id: str | None
    state: str
    started_at: datetime | None
    ended_at: datetime | None
    rubric_id: str | None
    rubric_version: int | None
    final_score: float | None
    passed: bool | None
    level: str | None
    weakest_parameter: str | None


def trainee_history(dsn: str, trainee_id: str) -> list[HistoryRow]:
    """All sessions of a trainee, oldest first, with the result under the session's rubric."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT s.session_id, s.exercise_id, s.state, s.started_at, s.ended_at, s.rubric_id, "
            "s.rubric_version, r.final_score, r.passed, r.level, r.weakest_parameter "
            "FROM sessions s LEFT JOIN results r ON r.session_id = s.session_id "
            "AND r.rubric_id = s.rubric_id AND r.rubric_version = s.rubric_version "
            "WHERE s.trainee_id = %s ORDER BY coalesce(s.started_at, s.created_at), s.session_id",
            (trainee_id,),
        ).fetchall()
    return [HistoryRow(*r) for r in rows]


@dataclass(frozen=True)
class LiveTile:
    """What the live class grid shows for one active session."""

    session_id: uuid.UUID
    rig_id: str
    trainee_id: str | None
    exercise_id: str | None
    state: str
    progress: float | None
    window_score: float | None
    out_of_window: list[str]
    seconds_since_sample: float | None


def live_class_status(dsn: str, *, site_id: str | None = None, class_id: str | None = None) -> list[LiveTile]:
    """Active sessions (armed/running/stopping/interrupted) with their latest window and age."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT s.session_id, s.rig_id, s.trainee_id, s.exercise_id, s.state,
                   w.progress, w.window_score,
                   coalesce((SELECT array_agg(p.param ORDER BY p.param)
                             FROM score_window_params p
                             WHERE p.session_id = s.session_id AND p.time = w.time
                               AND p.window_idx = w.window_idx
                               AND (p.mean < p.lo OR p.mean > p.hi)), '{}'),
                   extract(epoch FROM now() - r.last_time)::float8
            FROM sessions s
            LEFT JOIN LATERAL (SELECT time, window_idx, progress, window_score FROM score_windows
                               WHERE session_id = s.session_id ORDER BY time DESC LIMIT 1) w
                   ON true
            LEFT JOIN LATERAL (SELECT last_time FROM pose_rate_1s
                               WHERE session_id = s.session_id ORDER BY bucket DESC LIMIT 1) r
                   ON true
            WHERE s.state = ANY(%(active)s)
              AND (%(site)s::text IS NULL OR s.site_id = %(site)s)
              AND (%(cls)s::text IS NULL OR s.class_id = %(cls)s)
            ORDER BY s.rig_id
            """,
            {"site": site_id, "cls": class_id, "active": list(ACTIVE_SESSION_STATES)},
        ).fetchall()
    return [LiveTile(r[0], r[1], r[2], r[3], r[4], r[5], r[6], list(r[7]), r[8]) for r in rows]


@dataclass(frozen=True)
class SessionFrames:
    """All stored frames of a session as arrays (the writer's PoseBatch layout)."""

    session_id: uuid.UUID
    rig_id: str
    seq: npt.NDArray[np.int64]
    time_us: npt.NDArray[np.int64]
    rig_time: npt.NDArray[np.float64]
    poses: npt.NDArray[np.float32]
    analog: npt.NDArray[np.float32]
    valid_mask: npt.NDArray[np.int32]

    @property
    def n(self) -> int:
        return int(self.seq.shape[0])


def session_frames(dsn: str, session_id: uuid.UUID) -> SessionFrames | None:
    """Read a session's frames by binary COPY parsed with numpy (the encoder's dtype in reverse).

    For exports and re-scoring. None if the session has no frames.
    """
    with psycopg.connect(dsn) as conn:
        shapes = conn.execute(
            "SELECT DISTINCT octet_length(rig_id), array_length(poses, 1), "
            "coalesce(array_length(analog, 1), 0), rig_id FROM pose_frames WHERE session_id = %s",
            (session_id,),
        ).fetchall()
        if not shapes:
            return None
        if len(shapes) != 1:
            raise ValueError(f"session {session_id} mixes rigs or tracker counts: {shapes}")
        rig_bytes, trackers, analog, rig_id = shapes[0]
        buf = bytearray()
        with conn.cursor().copy(
            "COPY (SELECT time, rig_time, session_id, rig_id, seq, poses, analog, valid_mask "
            "FROM pose_frames WHERE session_id = %s ORDER BY seq) TO STDOUT (FORMAT BINARY)",
            (session_id,),
        ) as copy:
            for chunk in copy:
                buf += chunk
    dt = copybin.row_dtype(pose_columns(int(rig_bytes), int(trackers), int(analog)))
    body = memoryview(buf)[len(copybin.HEADER) : len(buf) - len(copybin.TRAILER)]
    rows = np.frombuffer(body, dtype=dt)
    n = rows.shape[0]
    poses = rows["poses"]["e"]["v"].astype(np.float32).reshape(n, int(trackers), 7)
    if analog:
        an = rows["analog"]["e"]["v"].astype(np.float32).reshape(n, int(analog))
    else:
        an = np.zeros((n, 0), np.float32)
    return SessionFrames(
        session_id=session_id,
        rig_id=str(rig_id),
        seq=rows["seq"].astype(np.int64),
        time_us=rows["time"].astype(np.int64) + copybin.PG_EPOCH_US,
        rig_time=rows["rig_time"].astype(np.float64),
        poses=poses,
        analog=an,
        valid_mask=rows["valid_mask"].astype(np.int32),
    )
