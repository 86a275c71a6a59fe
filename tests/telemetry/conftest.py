"""Fixtures for the telemetry tests: a migrated database and pose-batch factories."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np
import pytest

from telemetry.migrate import migrate
from telemetry.records import PoseBatch

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


@pytest.fixture(scope="module")
def tdsn(db_dsn: str) -> str:
    """A fresh database of the module with every telemetry migration applied."""
    migrate(db_dsn)
    return db_dsn


@pytest.fixture
def pose_batch() -> Callable[..., PoseBatch]:
    return make_pose_batch
