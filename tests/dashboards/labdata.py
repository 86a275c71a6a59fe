"""Realistic synthetic telemetry for the dashboard SQL tests (small: ~15k rows, < 1 s to load).

Two schools; three classes; twelve pseudonymous trainees; two exercises (a GMAW fillet weld and a
spray panel) with versioned rubrics; four weeks of finished sessions with per-second scoring
windows, parameter bands, cues, events, results and per-metric breakdowns (some re-scored with
rubric v2); and one class running *now* (`NOW`) on four rigs: two fine, one trainee struggling
(half of the last 10 s out of window) and one rig whose data stopped 20 s ago. Operations
metrics include counters with a restart (reset) in the middle. A cross-site competition
(`competition_data`) runs partly on these sessions.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import competition_data
import psycopg

from dashboards.check import Column, Result

NOW = datetime(2026, 11, 2, 10, 0, 0, tzinfo=UTC)
"""The moment the live class is looked at; every range in the tests ends here."""

SITES = [("site-a", "North vocational school"), ("site-b", "South technical college")]
CLASSES = [("class-a1", "site-a", "Welding 1A"), ("class-a2", "site-a", "Welding 1B"),
           ("class-b1", "site-b", "Painting 2")]
RIGS = [("site-a", f"rig-0{i}") for i in range(1, 5)] + [("site-b", "rig-01"), ("site-b", "rig-02")]

# exercise -> (rubric id, parameters with (ideal, lo, hi) from the domain notes)
EXERCISES: dict[str, tuple[str, str, dict[str, tuple[float, float, float]]]] = {
    "gmaw-fillet-t": ("Fillet weld, T-joint", "gmaw-fillet", {
        "work_angle": (45.0, 40.0, 50.0),        # degrees, T-joint fillet
        "travel_angle": (10.0, 5.0, 15.0),       # degrees, push
        "ctwd": (15.0, 10.0, 20.0),              # mm
        "travel_speed": (6.0, 4.0, 8.0),         # mm/s
    }),
    "spray-panel": ("Spray panel", "spray-panel", {
        "gun_distance": (200.0, 150.0, 250.0),   # mm
        "gun_angle": (90.0, 80.0, 100.0),        # degrees
        "gun_speed": (0.3, 0.25, 0.35),          # m/s
    }),
}
LEVELS = [(80.0, "L3 高级工"), (70.0, "L4 中级工"), (60.0, "L5 初级工")]
PASS_MARK = 60.0
WINDOW_S = 1.0
"""Scoring window length in the synthetic data (the kernels' default is of this order)."""


@dataclass(frozen=True)
class SessionPlan:
    """One synthetic session."""

    session_id: uuid.UUID
    site_id: str
    rig_id: str
    trainee_id: str
    class_id: str
    exercise_id: str
    start: datetime
    seconds: int
    skill: float  # 0..1: share of time in window
    state: str = "finished"
    stop_data_s: int | None = None  # seconds into the session after which data stops


def trainees() -> list[tuple[str, str, str]]:
    """(trainee_id, site_id, class_id)."""
    return [(f"tr-{c[6:]}-{i}", site, c) for c, site, _ in CLASSES for i in range(1, 5)]


LIVE_CLASS = "class-a1"
LIVE_START = NOW - timedelta(minutes=5)
STRUGGLING_RIG = "rig-02"
SILENT_RIG = "rig-03"
REVIEW_TRAINEE = "tr-b1-1"
"""A trainee with only finished sessions (not in the live class)."""


def plans(rng: random.Random) -> list[SessionPlan]:
    """Four weeks of finished sessions, then the live class."""
    out: list[SessionPlan] = []
    for n, (trainee, site, klass) in enumerate(trainees()):
        exercise = "spray-panel" if site == "site-b" else "gmaw-fillet-t"
        rigs = [r for s, r in RIGS if s == site]
        base_skill = 0.55 + 0.08 * (n % 5)
        for k in range(3):
            start = NOW - timedelta(days=27 - 9 * k, hours=n % 6) + timedelta(minutes=7 * n)
            out.append(SessionPlan(
                uuid.UUID(int=rng.getrandbits(128), version=4), site, rigs[(n + k) % len(rigs)],
                trainee, klass, exercise, start, 60, min(0.97, base_skill + 0.1 * k),
            ))
    live = [t for t in trainees() if t[2] == LIVE_CLASS]
    for (trainee, site, klass), rig in zip(live, ["rig-01", "rig-02", "rig-03", "rig-04"],
                                          strict=True):
        seconds = int((NOW - LIVE_START).total_seconds())
        out.append(SessionPlan(
            uuid.UUID(int=rng.getrandbits(128), version=4), site, rig, trainee, klass,
            "gmaw-fillet-t", LIVE_START, seconds, 0.9, state="running",
            stop_data_s=seconds - 20 if rig == SILENT_RIG else None,
        ))
    return out


def _copy(conn: psycopg.Connection[Any], table: str, columns: list[str],
          rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _score(frac: float) -> float:
    return max(0.0, min(100.0, 100 * frac + 5))


def fill(dsn: str, seed: int = 7) -> list[SessionPlan]:
    """Insert everything; returns the session plans (for assertions)."""
    rng = random.Random(seed)
    sessions = plans(rng)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO sites (site_id, name) SELECT * FROM unnest(%s::text[], %s::text[])",
                     ([s for s, _ in SITES], [n for _, n in SITES]))
        for class_id, site, name in CLASSES:
            conn.execute("INSERT INTO classes (class_id, site_id, name, instructor) "
                         "VALUES (%s, %s, %s, 'instructor')", (class_id, site, name))
        for site, rig in RIGS:
            conn.execute("INSERT INTO rigs (site_id, rig_id, name) VALUES (%s, %s, %s)",
                         (site, rig, rig))
        for trainee, site, klass in trainees():
            conn.execute("INSERT INTO trainees (trainee_id, site_id, class_id) VALUES (%s,%s,%s)",
                         (trainee, site, klass))
            conn.execute("INSERT INTO trainee_identities (trainee_id, real_name) VALUES (%s,%s)",
                         (trainee, f"Name of {trainee}"))
        for exercise, (name, rubric, params) in EXERCISES.items():
            conn.execute("INSERT INTO exercises (exercise_id, family, name) VALUES (%s,%s,%s)",
                         (exercise, exercise.split("-")[0], name))
            for version in (1, 2):
                doc = {p: {"ideal": i, "lo": lo, "hi": hi, "weight": 1} for p, (i, lo, hi)
                       in params.items()}
                conn.execute("INSERT INTO rubrics (rubric_id, version, exercise_id, rubric, "
                             "pass_mark) VALUES (%s,%s,%s,%s,%s)",
                             (rubric, version, exercise, json.dumps(doc), PASS_MARK))

        windows, wparams, rates, cues, events, results, metrics = [], [], [], [], [], [], []
        for plan in sessions:
            _, rubric, params = EXERCISES[plan.exercise_id]
            end = plan.start + timedelta(seconds=plan.seconds)
            struggling = plan.state == "running" and plan.rig_id == STRUGGLING_RIG
            data_s = plan.stop_data_s if plan.stop_data_s is not None else plan.seconds
            fracs: dict[str, list[float]] = {p: [] for p in params}
            for w in range(data_s):
                t = plan.start + timedelta(seconds=(w + 1) * WINDOW_S)
                worst = 1.0
                for p, (ideal, lo, hi) in params.items():
                    half = (hi - lo) / 2
                    frac = min(1.0, max(0.0, rng.gauss(plan.skill, 0.08)))
                    if struggling and w >= data_s - 10 and p == "work_angle":
                        frac = 0.5  # half of every window of the last 10 s out of band
                    drift = (1 - frac) * 1.6 * half * math.sin(w / 7)
                    fracs[p].append(frac)
                    worst = min(worst, frac)
                    wparams.append((t, plan.session_id, w, p, ideal + drift,
                                    abs(drift) / 3 + 0.1 * half, frac, ideal, lo, hi))
                    if (frac < 0.75 and w % 3 == 0) or (w == 5 and p == next(iter(params))):
                        kind = "too_high" if drift > 0 else "too_low"
                        cues.append((t, plan.site_id, plan.session_id, plan.rig_id, p, kind, 2,
                                     ideal + drift, f"{p.replace('_', ' ')} {kind.replace('_', ' ')}"))
                windows.append((t, plan.site_id, plan.session_id, plan.rig_id, w, (w + 1) * 120,
                                (w + 1) / plan.seconds, 0.4 + 2 * (1 - plan.skill) + 0.01 * w,
                                _score(worst)))
                # 120 Hz nominal; a short gap in every third finished session.
                frames = 90 if (plan.state == "finished" and w == 30 and plan.seconds % 3 == 0) else 120
                rates.append((t - timedelta(seconds=1), plan.session_id, plan.rig_id, frames,
                              frames - (w % 11 == 0), (w + 1) * 120 - 1,
                              t - timedelta(milliseconds=4)))
            events.append((plan.start, plan.site_id, plan.session_id, plan.rig_id,
                           "state:running", json.dumps({"from": "ready"})))
            if plan.state == "finished":
                events.append((end, plan.site_id, plan.session_id, plan.rig_id, "state:finished",
                               json.dumps({"from": "stopping"})))
                scores = {p: _score(sum(v) / len(v)) for p, v in fracs.items()}
                for version, shift in ((1, 0.0), (2, -4.0)):
                    if version == 2 and plan.trainee_id.endswith(("-3", "-4")):
                        continue  # only part of the cohort was re-scored with v2
                    per = {p: max(0.0, s + shift) for p, s in scores.items()}
                    final = sum(per.values()) / len(per)
                    level = next((name for mark, name in LEVELS if final >= mark), None)
                    weakest = min(per, key=lambda p: per[p])
                    results.append((plan.session_id, rubric, version, plan.site_id,
                                    plan.trainee_id, plan.exercise_id, final, final >= PASS_MARK,
                                    level, weakest, 0.4 + 2 * (1 - plan.skill),
                                    json.dumps(per), "0.1.0", end + timedelta(days=version - 1)))
                    for p, (ideal, lo, hi) in params.items():
                        tiw = sum(fracs[p]) / len(fracs[p])
                        metrics.append((plan.session_id, rubric, version, p, tiw, per[p],
                                        1.0 / len(params), tiw, ideal, lo, hi))
            expected = plan.seconds * 120
            received = sum(r[3] for r in rates if r[1] == plan.session_id)
            conn.execute(
                "INSERT INTO sessions (session_id, site_id, rig_id, trainee_id, class_id, "
                "exercise_id, rubric_id, rubric_version, state, created_at, started_at, ended_at, "
                "frames_expected, frames_received, frames_interpolated, frames_duplicate, "
                "frames_nacked, gap_count, clock_offset_ms, clock_rtt_ms) VALUES "
                "(%s,%s,%s,%s,%s,%s,%s,1,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (plan.session_id, plan.site_id, plan.rig_id, plan.trainee_id, plan.class_id,
                 plan.exercise_id, rubric, plan.state, plan.start - timedelta(seconds=30),
                 plan.start, end if plan.state == "finished" else None, expected, received,
                 max(0, expected - received) // 2, 3, 1, int(received < expected),
                 rng.uniform(-2, 2), rng.uniform(0.2, 1.5)),
            )
        _copy(conn, "score_windows", ["time", "site_id", "session_id", "rig_id", "window_idx",
                                      "seq_hi", "progress", "alignment_distance", "window_score"],
              windows)
        _copy(conn, "score_window_params", ["time", "session_id", "window_idx", "param", "mean",
                                            "std", "frac_in_window", "ideal", "lo", "hi"], wparams)
        _copy(conn, "pose_rate_1s", ["bucket", "session_id", "rig_id", "frames", "valid_frames",
                                     "last_seq", "last_time"], rates)
        _copy(conn, "cues", ["time", "site_id", "session_id", "rig_id", "param", "kind",
                             "severity", "value", "message"], cues)
        _copy(conn, "session_events", ["time", "site_id", "session_id", "rig_id", "kind",
                                       "detail"], events)
        _copy(conn, "results", ["session_id", "rubric_id", "rubric_version", "site_id",
                                "trainee_id", "exercise_id", "final_score", "passed", "level",
                                "weakest_parameter", "alignment_distance", "components",
                                "kernel_version", "scored_at"], results)
        _copy(conn, "result_metrics", ["session_id", "rubric_id", "rubric_version", "metric",
                                       "value", "score", "weight", "time_in_window", "ideal",
                                       "lo", "hi"], metrics)
        _copy(conn, "ops_metrics", ["time", "site_id", "component", "rig_id", "name", "label",
                                    "value"], list(_ops_rows(rng)))
    fill_competition(dsn, sessions)
    return sessions


def fill_competition(dsn: str, sessions: list[SessionPlan]) -> None:
    """The competition of `competition_data` on real lab sessions: F has finished a session
    (pipeline result, no referee mark yet) and G is in the live class (score windows only), so
    both provisional paths of the standings run on lab data."""
    competition_data.fill(dsn, create_sites=False, sessions={
        comp: (p.site_id, p.rig_id, str(p.session_id))
        for comp, p in competition_plans(sessions).items()})


def competition_plans(sessions: list[SessionPlan]) -> dict[str, SessionPlan]:
    """Competitor -> the lab session it runs on (F finished, G in the live class)."""
    return {
        "F": next(p for p in sessions if p.state == "finished" and p.site_id == "site-a"),
        competition_data.LIVE_COMPETITOR: next(
            p for p in sessions if p.state == "running" and p.rig_id == "rig-01"),
    }


def _ops_rows(rng: random.Random) -> Any:
    """An hour of 10 s operations samples; the controller restarts at NOW - 20 min."""
    restart = NOW - timedelta(minutes=20)
    dropped = {"late": 0.0, "corrupt": 0.0}
    nacked = 0.0
    for i in range(360):
        t = NOW - timedelta(hours=1) + timedelta(seconds=10 * (i + 1))
        if t == restart:
            dropped, nacked = {"late": 0.0, "corrupt": 0.0}, 0.0
        dropped["late"] += rng.randint(0, 3)
        dropped["corrupt"] += rng.randint(0, 1)
        nacked += rng.randint(0, 2)
        yield (t, "site-a", "controller", "", "rigs_online", "", 4.0 if i < 357 else 3.0)
        yield (t, "site-a", "writer", "", "ingest_lag_ms", "", rng.uniform(40, 400))
        yield (t, "site-a", "writer", "", "spool_pending_bytes", "", 0.0 if i % 60 else 2.5e6)
        yield (t, "site-a", "writer", "", "spool_pending_records", "", 0.0 if i % 60 else 310)
        for kind, value in dropped.items():
            yield (t, "site-a", "transport", "rig-02", "frames_dropped", kind, value)
        yield (t, "site-a", "transport", "rig-03", "frames_nacked", "seq_gap", nacked)


def make_runner(conn: psycopg.Connection[Any]) -> Any:
    """Run SQL read-only (as the Grafana role would) and name the result types."""

    def run(sql: str) -> Result:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            cur = conn.execute(sql.encode())
            rows = cur.fetchall()
            columns = []
            for d in cur.description or []:
                info = conn.adapters.types.get(d.type_code)
                columns.append(Column(d.name, info.name if info else str(d.type_code)))
        return Result(columns, rows)

    return run
