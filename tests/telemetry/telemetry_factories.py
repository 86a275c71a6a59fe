"""Deterministic telemetry records for the tests (imported as ``telemetry_factories``)."""

from __future__ import annotations

import uuid

import numpy as np

from telemetry.records import PoseBatch, ScoreWindowBatch

T0_US = 1_793_520_000_000_000  # 2026-11-01T08:00:00Z, the range the dashboards tests use
PERIOD_US = 8_333  # 120 Hz


def make_pose_batch(
    session_id: uuid.UUID,
    seq0: int,
    n: int,
    *,
    rig_id: str = "rig-01",
    trackers: int = 6,
    analog: int = 2,
    t0_us: int = T0_US,
) -> PoseBatch:
    """Deterministic frames: values depend only on (session, seq), so a resend is identical."""
    seqs = np.arange(seq0, seq0 + n, dtype=np.int64)
    rng = np.random.default_rng([session_id.int & 0xFFFFFFFF, seq0, n])
    poses = rng.standard_normal((n, trackers, 7)).astype(np.float32)
    poses[:, :, 0] = seqs[:, None] * 0.001 + np.arange(trackers)[None, :]  # px encodes seq
    return PoseBatch(
        session_id=session_id,
        rig_id=rig_id,
        seq0=seq0,
        time_us=t0_us + seqs * PERIOD_US,
        rig_time=1000.0 + seqs / 120.0 + 1e-7,
        poses=poses,
        analog=rng.random((n, analog), dtype=np.float32),
        valid_mask=np.where(seqs % 50 == 0, 0b011111, 0b111111).astype(np.int32),
    )


def score_batch(sid: uuid.UUID, w0: int, n: int) -> ScoreWindowBatch:
    params = ("work_angle", "travel_speed")
    idx = np.arange(w0, w0 + n, dtype=np.int32)
    return ScoreWindowBatch(
        session_id=sid,
        rig_id="rig-01",
        window_idx=idx,
        time_us=1_793_520_000_000_000 + idx.astype(np.int64) * 250_000,
        seq_hi=idx.astype(np.int64) * 30 + 29,
        progress=(idx / 100).astype(np.float32),
        alignment_distance=(idx * 0.5).astype(np.float32),
        window_score=np.full(n, 80, np.float32),
        params=params,
        mean=np.tile(np.array([45.0, 6.0], np.float32), (n, 1)),
        std=np.ones((n, 2), np.float32),
        frac_in_window=np.full((n, 2), 0.75, np.float32),
        ideal=np.array([45, 6], np.float32),
        lo=np.array([40, 4], np.float32),
        hi=np.array([50, 8], np.float32),
    )
