"""The writer against the real TimescaleDB: exact round trip, idempotent resends, acks, batches."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest
from telemetry_factories import score_batch

from telemetry.records import (
    Cue,
    MetricBreakdown,
    OpsMetric,
    PoseBatch,
    SessionEvent,
    SessionRecord,
    SessionResult,
)
from telemetry.writer import TelemetryWriter, WriterConfig

PB = Callable[..., PoseBatch]


def _writer(dsn: str, tmp_path: Path, **kw: object) -> tuple[TelemetryWriter, list[dict[uuid.UUID, int]]]:
    acks: list[dict[uuid.UUID, int]] = []
    cfg = WriterConfig("site-a", tmp_path / "spool", **kw)  # type: ignore[arg-type]
    return TelemetryWriter(dsn, cfg, on_ack=acks.append), acks


def _frames(dsn: str, sid: uuid.UUID) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT seq, time, rig_time, rig_id, poses, analog, valid_mask FROM pose_frames "
            "WHERE session_id = %s ORDER BY seq",
            (sid,),
        ).fetchall()


def test_round_trip_is_exact(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    batches = [pose_batch(sid, i * 12, 12) for i in range(10)]
    batches.append(pose_batch(sid, 120, 7, trackers=6, analog=2))
    w, acks = _writer(tdsn, tmp_path)
    with w:
        for b in batches:
            w.submit(b)
        assert w.flush(10)
    assert w.acked(sid) == 126
    assert acks and max(max(a.values()) for a in acks) == 126
    rows = _frames(tdsn, sid)
    assert [r[0] for r in rows] == list(range(127))
    seq = np.concatenate([b.seqs for b in batches])
    t_us = np.concatenate([b.time_us for b in batches])
    rig_time = np.concatenate([b.rig_time for b in batches])
    poses = np.concatenate([b.poses for b in batches])
    analog = np.concatenate([b.analog for b in batches])
    valid = np.concatenate([b.valid_mask for b in batches])
    for i, (s, t, rt, rig, p, a, v) in enumerate(rows):
        assert s == seq[i]
        got_us = round(t.timestamp() * 1e6)  # type: ignore[attr-defined]
        assert got_us == t_us[i]
        assert rt == rig_time[i]  # float8 exact
        assert rig == "rig-01"
        assert np.array_equal(np.array(p, dtype=np.float32), poses[i])  # float4 exact
        assert np.array_equal(np.array(a, dtype=np.float32), analog[i])
        assert v == valid[i]


def test_per_tracker_view_and_rollup(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    b = pose_batch(sid, 0, 240)  # two seconds at 120 Hz
    w, _ = _writer(tdsn, tmp_path)
    with w:
        w.submit(b)
        assert w.flush(10)
    with psycopg.connect(tdsn) as conn:
        row = conn.execute(
            "SELECT px, py, pz, qx, qy, qz, qw, valid FROM pose_samples "
            "WHERE session_id = %s AND seq = 50 AND tracker = 5",
            (sid,),
        ).fetchone()
        rate = conn.execute(
            "SELECT sum(frames), sum(valid_frames), max(last_seq) FROM pose_rate_1s WHERE session_id = %s",
            (sid,),
        ).fetchone()
        per_min = conn.execute(
            "SELECT sum(frames) FROM pose_rate_1m WHERE session_id = %s", (sid,)
        ).fetchone()
    assert row is not None
    assert np.array_equal(np.array(row[:7], dtype=np.float32), b.poses[50, 5])
    assert row[7] is False  # seq 50: tracker 5 flagged invalid by the factory
    assert rate == (240, 240 - 5, 239)  # seqs 0, 50, 100, 150, 200 have a lost tracker
    assert per_min == (240,)


def test_resend_stores_nothing_twice(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path)
    with w:
        for i in range(5):
            w.submit(pose_batch(sid, i * 10, 10))
        # the same chunks again, an overlapping one, and duplicates inside one transaction
        for i in range(5):
            w.submit(pose_batch(sid, i * 10, 10))
        w.submit(pose_batch(sid, 45, 10))  # 45..54: 50..54 new
        w.submit(pose_batch(sid, 55, 5))
        w.submit(pose_batch(sid, 55, 5))
        assert w.flush(10)
        stats = w.stats()
    assert w.acked(sid) == 59
    assert stats.rows_written == 60
    assert stats.rows_deduplicated == 50 + 5 + 5
    # a new writer (fresh process) recovers the stored ranges from the database
    w2, _ = _writer(tdsn, tmp_path / "second")
    with w2:
        w2.submit(pose_batch(sid, 0, 60))
        w2.submit(pose_batch(sid, 60, 2))
        assert w2.flush(10)
        assert w2.stats().rows_written == 2
    rows = _frames(tdsn, sid)
    assert [r[0] for r in rows] == list(range(62))
    with psycopg.connect(tdsn) as conn:
        assert conn.execute(
            "SELECT sum(frames) FROM pose_rate_1s WHERE session_id = %s", (sid,)
        ).fetchone() == (62,)
        assert conn.execute(
            "SELECT seq_lo, seq_hi FROM ingest_ranges WHERE session_id = %s", (sid,)
        ).fetchall() == [(0, 61)]


def test_ack_is_contiguous_from_zero(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path)
    with w:
        w.submit(pose_batch(sid, 0, 10))
        w.submit(pose_batch(sid, 20, 10))
        assert w.flush(10)
        assert w.acked(sid) == 9
        assert w.durable_ranges(sid).intervals == [(0, 9), (20, 29)]
        w.submit(pose_batch(sid, 10, 10))
        assert w.flush(10)
        assert w.acked(sid) == 29


def test_back_pressure_blocks_when_the_queue_is_full(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path, queue_max_rows=30)
    # not started: nothing drains the queue
    w.submit(pose_batch(sid, 0, 20))
    w.submit(pose_batch(sid, 20, 10))
    with pytest.raises(TimeoutError):
        w.submit(pose_batch(sid, 30, 10), timeout=0.05)
    done = threading.Event()

    def producer() -> None:
        w.submit(pose_batch(sid, 30, 10))  # blocks until the thread makes room
        done.set()

    th = threading.Thread(target=producer)
    th.start()
    assert not done.wait(0.1)
    w.start()
    assert done.wait(10)
    th.join()
    assert w.flush(10)
    w.close()
    assert w.acked(sid) == 39


def test_many_sessions_shapes_and_batch_limits(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sids = [uuid.uuid4() for _ in range(8)]
    w, _ = _writer(tdsn, tmp_path, max_batch_rows=100, max_batch_ms=5)
    with w:
        for k in range(10):
            for j, sid in enumerate(sids):
                w.submit(pose_batch(sid, k * 12, 12, rig_id=f"rig-{j:0{j + 1}d}", trackers=1 + j % 4,
                                    analog=j % 3))  # fmt: skip
        assert w.flush(20)
        stats = w.stats()
    assert stats.transactions >= 9  # 960 frames / 100 rows per transaction
    for j, sid in enumerate(sids):
        assert w.acked(sid) == 119
        rows = _frames(tdsn, sid)
        assert len(rows) == 120
        b = pose_batch(sid, 0, 12, trackers=1 + j % 4, analog=j % 3)
        assert np.array_equal(np.array(rows[3][4], dtype=np.float32), b.poses[3])
        analog = rows[3][5]
        assert isinstance(analog, list) and len(analog) == j % 3


def test_low_rate_records(tdsn: str, tmp_path: Path) -> None:
    sid = uuid.uuid4()
    t = 1_793_520_000_000_000
    w, _ = _writer(tdsn, tmp_path)
    with w:
        w.submit(SessionRecord(sid, "rig-01", "assigned", trainee_id="T-001", exercise_id="weld-t",
                               rubric_id="weld-t", rubric_version=2, created_us=t))  # fmt: skip
        w.submit(SessionRecord(sid, "rig-01", "running", started_us=t + 1_000_000, gap_count=1))
        w.submit(score_batch(sid, 0, 10))
        w.submit(score_batch(sid, 5, 10))  # windows 5..9 again
        w.submit(Cue(t + 5, sid, "rig-01", "too_high", "work_angle", 2, 58.0, "lower the torch"))
        w.submit(Cue(t + 5, sid, "rig-01", "too_high", "work_angle", 2, 58.0, "lower the torch"))
        w.submit(SessionEvent(t + 7, sid, "state:running", "rig-01", {"by": "instructor"}))
        w.submit(SessionEvent(t + 7, sid, "state:running", "rig-01", {"by": "instructor"}))
        w.submit(OpsMetric(t, "controller", "frames_nacked", 3.0, "rig-01", "bad_crc"))
        w.submit(SessionRecord(sid, "rig-01", "finished", ended_us=t + 60_000_000))
        res = SessionResult(sid, "weld-t", 2, 71.5, True, "T-001", "weld-t", "四级",
                            "travel_speed", 12.5, {"work_angle": 80},
                            (MetricBreakdown("work_angle", 0.8, 80, 0.5, 0.8, 45, 40, 50),
                             MetricBreakdown("travel_speed", 0.6, 63, 0.5, 0.6, 6, 4, 8)),
                            "k1", t + 61_000_000)  # fmt: skip
        w.submit(res)
        w.submit(res)
        assert w.flush(10)
    with psycopg.connect(tdsn) as conn:
        s = conn.execute(
            "SELECT state, trainee_id, rubric_version, started_at IS NOT NULL, ended_at IS NOT NULL,"
            " gap_count, site_id FROM sessions WHERE session_id = %s",
            (sid,),
        ).fetchone()
        assert s == ("finished", "T-001", 2, True, True, 1, "site-a")
        assert conn.execute(
            "SELECT count(*), count(DISTINCT window_idx) FROM score_windows WHERE session_id = %s",
            (sid,),
        ).fetchone() == (15, 15)
        assert conn.execute(
            "SELECT count(*) FROM score_window_params WHERE session_id = %s", (sid,)
        ).fetchone() == (30,)
        assert conn.execute("SELECT count(*) FROM cues WHERE session_id = %s", (sid,)).fetchone() == (1,)
        assert conn.execute(
            "SELECT count(*) FROM session_events WHERE session_id = %s", (sid,)
        ).fetchone() == (1,)
        assert conn.execute(
            "SELECT value, label FROM ops_metrics WHERE name = 'frames_nacked'"
        ).fetchall() == [(3.0, "bad_crc")]
        r = conn.execute(
            "SELECT final_score, passed, level, components FROM results WHERE session_id = %s", (sid,)
        ).fetchall()
        assert r == [(71.5, True, "四级", {"work_angle": 80})]
        assert conn.execute(
            "SELECT metric, score FROM result_metrics WHERE session_id = %s ORDER BY metric", (sid,)
        ).fetchall() == [("travel_speed", 63.0), ("work_angle", 80.0)]


def test_rejected_record_does_not_block(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path)
    with w:
        w.submit(pose_batch(sid, 0, 10))
        w.submit(SessionRecord(sid, "rig-01", "no-such-state"))  # violates the CHECK
        w.submit(pose_batch(sid, 10, 10))
        assert w.flush(10)
        assert w.stats().rejected_records == 1
    assert w.acked(sid) == 19
    with psycopg.connect(tdsn) as conn:
        row = conn.execute("SELECT kind, error FROM ingest_rejects").fetchone()
        assert row is not None and str(row[1]).startswith("new row for relation")


def test_writer_records_its_own_ops_metrics(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path, metrics_interval_s=0.0)
    with w:
        w.submit(pose_batch(sid, 0, 12))
        assert w.flush(10)
        w.submit(pose_batch(sid, 12, 12))  # the next flush carries the metrics of the first
        assert w.flush(10)
    with psycopg.connect(tdsn) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM ops_metrics WHERE component = 'writer' AND site_id = 'site-a'"
            ).fetchall()
        }
    assert {"writer_queue_depth", "spool_pending_records", "spool_pending_bytes", "rows_written"} <= names
    assert "ingest_lag_ms" in names


def test_a_failed_writer_thread_refuses_input(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    """A bug in the thread must surface at submit(), never hang the controller. The failure is
    injected by replacing the store's write (the one mock here: a bug cannot be provoked)."""
    from telemetry.writer import WriterError

    w, _ = _writer(tdsn, tmp_path)

    def broken(*_a: object) -> None:
        raise RuntimeError("injected bug")

    w._store.write = broken  # type: ignore[assignment,method-assign]
    w.start()
    w.submit(pose_batch(uuid.uuid4(), 0, 12))
    deadline = time.monotonic() + 10
    while w.stats().error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "injected bug" in (w.stats().error or "")
    with pytest.raises(WriterError, match="injected bug"):
        w.submit(pose_batch(uuid.uuid4(), 0, 12))
    w.close()


def test_every_controller_session_state_is_accepted(tdsn: str, tmp_path: Path) -> None:
    from lab_controller.controller.sessions import SessionState
    from telemetry.schema import SESSION_STATES

    assert set(SESSION_STATES) == {s.value for s in SessionState}
    sids = {state: uuid.uuid4() for state in SESSION_STATES}
    w, _ = _writer(tdsn, tmp_path)
    with w:
        for state, sid in sids.items():
            w.submit(SessionRecord(sid, "rig-01", state))
        assert w.flush(10)
        assert w.stats().rejected_records == 0
    with psycopg.connect(tdsn) as conn:
        got: dict[str, uuid.UUID] = dict(
            conn.execute(
                "SELECT state, session_id FROM sessions WHERE session_id = ANY(%s)", (list(sids.values()),)
            ).fetchall()
        )
    assert got == sids


def test_forgotten_session_still_deduplicates(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path)
    with w:
        w.submit(pose_batch(sid, 0, 24))
        assert w.flush(10)
        w.forget_session(sid)
        assert w.acked(sid) == -1
        w.submit(pose_batch(sid, 0, 36))  # a late resend plus 12 new frames
        assert w.flush(10)
        assert w.stats().rows_written == 36
    assert [r[0] for r in _frames(tdsn, sid)] == list(range(36))


def test_slow_database_goes_to_the_spool(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    """A statement stuck longer than statement_timeout_ms (here: waiting for a lock another
    session holds) counts as an outage: the batch is spooled and acknowledged, then drained."""
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path, statement_timeout_ms=300, retry_interval_s=0.05, max_batch_ms=5)
    with w:
        w.submit(pose_batch(sid, 0, 12))
        assert w.flush(10)
        with psycopg.connect(tdsn) as blocker:
            blocker.execute("LOCK TABLE pose_frames IN ACCESS EXCLUSIVE MODE")
            w.submit(pose_batch(sid, 12, 12))
            assert w.flush(10)  # durable in the spool while the table is locked
            assert w.acked(sid) == 23
            assert w.stats().spooled_records >= 1 and w.stats().outages >= 1
        # lock released: the spool drains
        assert w.wait_drained(20), w.stats()
    assert [r[0] for r in _frames(tdsn, sid)] == list(range(24))


def test_spill_when_the_queue_runs_full(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    sid = uuid.uuid4()
    w, _ = _writer(tdsn, tmp_path, max_batch_rows=10, queue_max_rows=100, spill_at_queue_fraction=0.2)
    for s in range(0, 60, 10):
        w.submit(pose_batch(sid, s, 10))  # queued before the thread runs: 60% full
    with w:
        assert w.wait_drained(20), w.stats()
        stats = w.stats()
    assert stats.spooled_records >= 1
    assert w.acked(sid) == 59
    assert [r[0] for r in _frames(tdsn, sid)] == list(range(60))
