"""The dashboards on rows written by the real telemetry writer (not by our own INSERTs).

One session of a GMAW exercise goes through `telemetry.writer.TelemetryWriter` exactly as the
controller hands it over: session record, 30 s of 120 Hz pose batches, scoring windows with
parameter bands, cues, events, the final result. The writer's own operations metrics land
too. Session review, Trainee progress and Lab operations must then show all of it; this
catches drift between what the writer stores and what the panels read.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from labdata import make_runner

from dashboards.boards import operations, session_review, trainee_progress
from dashboards.check import check_dashboard
from dashboards.macros import TimeRange
from telemetry import records as rec
from telemetry.migrate import migrate
from telemetry.writer import TelemetryWriter, WriterConfig

SITE, RIG, TRAINEE, CLASS, EXERCISE = "site-w", "rig-07", "tr-w-1", "class-w", "gmaw-fillet-t"
RATE_HZ, SECONDS = 120, 30
PARAMS = {"work_angle": (45.0, 40.0, 50.0), "travel_angle": (10.0, 5.0, 15.0),
          "ctwd": (15.0, 10.0, 20.0)}


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _records(start: datetime) -> list[rec.Record]:
    sid = uuid.uuid4()
    n = RATE_HZ * SECONDS
    t_us = _us(start) + (np.arange(n, dtype=np.int64) * 1_000_000) // RATE_HZ
    poses = np.zeros((n, 2, 7), dtype=np.float32)
    poses[:, :, 3] = 1.0  # identity quaternions
    poses[:, 0, 0] = np.linspace(0, 0.2, n)  # the torch travels 20 cm along x
    out: list[rec.Record] = [
        rec.SessionRecord(sid, RIG, "running", trainee_id=TRAINEE, class_id=CLASS,
                          exercise_id=EXERCISE, rubric_id="gmaw-fillet", rubric_version=1,
                          created_us=_us(start) - 5_000_000, started_us=_us(start)),
        rec.SessionEvent(_us(start), sid, "state:running", RIG),
    ]
    for k in range(0, n, RATE_HZ // 4):  # 250 ms chunks, as rigs send them
        sl = slice(k, k + RATE_HZ // 4)
        out.append(rec.PoseBatch(sid, RIG, k, t_us[sl], t_us[sl] / 1e6 + 3.0, poses[sl],
                                 np.zeros((t_us[sl].shape[0], 1), np.float32),
                                 np.full(t_us[sl].shape[0], 0b11, np.int32)))
    w = np.arange(SECONDS)
    frac = np.clip(0.9 - 0.4 * (w[:, None] % 7 == 0) + np.zeros((1, len(PARAMS))), 0, 1)
    band = np.array(list(PARAMS.values()), dtype=np.float32)
    out.append(rec.ScoreWindowBatch(
        sid, RIG, w.astype(np.int32), t_us[(w + 1) * RATE_HZ - 1], (w + 1) * RATE_HZ - 1,
        ((w + 1) / SECONDS).astype(np.float32), (0.5 + 0.01 * w).astype(np.float32),
        (100 * frac.min(axis=1)).astype(np.float32), tuple(PARAMS),
        (band[:, 0] + (1 - frac) * 6).astype(np.float32), np.full(frac.shape, 1.5, np.float32),
        frac.astype(np.float32), band[:, 0].copy(), band[:, 1].copy(), band[:, 2].copy()))
    out.append(rec.Cue(_us(start) + 7_000_000, sid, RIG, "too_high", "work_angle", 2, 51.0,
                       "work angle too high"))
    end = start + timedelta(seconds=SECONDS)
    out += [
        rec.SessionEvent(_us(end), sid, "state:finished", RIG),
        rec.SessionRecord(sid, RIG, "finished", ended_us=_us(end), frames_expected=n,
                          frames_received=n, gap_count=0, clock_offset_ms=0.4,
                          clock_rtt_ms=0.9),
        rec.SessionResult(sid, "gmaw-fillet", 1, 81.5, True, trainee_id=TRAINEE,
                          exercise_id=EXERCISE, level="L3 高级工", weakest_parameter="ctwd",
                          alignment_distance=0.8, kernel_version="test",
                          metrics=tuple(rec.MetricBreakdown(p, 0.8, 80.0 + i, 1 / 3, 0.8, *b)
                                        for i, (p, b) in enumerate(PARAMS.items()))),
    ]
    return out


@pytest.fixture(scope="module")
def written(db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> datetime:
    migrate(db_dsn)
    with psycopg.connect(db_dsn) as conn:  # reference data, as `labctl` set-up would add it
        conn.execute("INSERT INTO sites (site_id, name) VALUES (%s, 'Writer school')", (SITE,))
        conn.execute("INSERT INTO classes (class_id, site_id) VALUES (%s, %s)", (CLASS, SITE))
        conn.execute("INSERT INTO trainees (trainee_id, site_id, class_id) VALUES (%s, %s, %s)",
                     (TRAINEE, SITE, CLASS))
        conn.execute("INSERT INTO rigs (site_id, rig_id) VALUES (%s, %s)", (SITE, RIG))
        conn.execute("INSERT INTO exercises (exercise_id) VALUES (%s)", (EXERCISE,))
        conn.execute("INSERT INTO rubrics (rubric_id, version, exercise_id, rubric) "
                     "VALUES ('gmaw-fillet', 1, %s, '{}')", (EXERCISE,))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    spool: Path = tmp_path_factory.mktemp("spool")
    # Short idle wake-ups so the writer reports its own metrics (lag, spool) within the test.
    config = WriterConfig(site_id=SITE, spool_dir=spool, metrics_interval_s=0.1,
                          retry_interval_s=0.05)
    with TelemetryWriter(db_dsn, config) as writer:
        for record in _records(start):
            writer.submit(record)
        assert writer.wait_drained(timeout=30)
        time.sleep(0.3)  # let the writer emit its own metrics once more after the data
        assert writer.wait_drained(timeout=30)
    return start


@pytest.fixture(scope="module")
def conn(db_dsn: str, written: datetime) -> Any:
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


@pytest.mark.parametrize("build", [session_review.build, trainee_progress.build],
                         ids=["session-review", "trainee-progress"])
def test_review_dashboards_show_the_written_session(conn: Any, written: datetime,
                                                    build: Any) -> None:
    rng = TimeRange(written - timedelta(hours=1), datetime.now(UTC), timedelta(seconds=1))
    checks = check_dashboard(build(), make_runner(conn), rng, {"trainee": TRAINEE})
    assert all(c.ok for c in checks), "\n".join(str(c) for c in checks if not c.ok)
    empty = [str(c) for c in checks if c.row_count == 0]
    assert not empty, "\n".join(empty)


def test_operations_show_the_writer_and_the_rig(conn: Any, written: datetime) -> None:
    rng = TimeRange(written - timedelta(minutes=5), datetime.now(UTC), timedelta(seconds=5))
    checks = check_dashboard(operations.build(), make_runner(conn), rng)
    assert all(c.ok for c in checks), "\n".join(str(c) for c in checks if not c.ok)
    rows = {c.query: c.row_count for c in checks}
    for name in ["SAMPLE_RATE", "RIG_STREAMING", "INGEST_LAG", "SPOOL_BYTES", "SPOOL_RECORDS",
                 "RIG_TABLE", "SESSION_LOSS"]:
        assert rows[f"operations.{name}"] > 0, name
    rate = next(c for c in checks if c.query == "operations.SAMPLE_RATE")
    values = [r[2] for r in make_runner(conn)(rate.sql).rows]
    assert max(values) == pytest.approx(RATE_HZ, rel=0.01)  # full seconds hold 120 frames
