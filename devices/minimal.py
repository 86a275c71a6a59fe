"""A minimal deterministic pose source for tests and benchmarks.

Sample *i* of a session is a closed-form function of (seed, i), so a test can recompute exactly
what a rig sent and check stored data for gaps, duplicates and corruption. The rich simulated
trainees live in `devices.sim`.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from devices.driver import DriverInfo, SampleBlock, SessionContext
from lab_controller.protocol import Cue

DEFAULT_TRACKERS: tuple[tuple[str, str], ...] = (
    ("tool", "tool"),
    ("headset", "headset"),
    ("off_hand", "off_hand"),
)
# Largest block one read() returns: 1 s at 120 Hz; a stalled agent catches up in several reads.
MAX_BLOCK = 120


class MinimalDriver:
    """Generates poses at ``rate_hz`` in real time on ``clock`` (default `time.monotonic`).

    ``loss_every`` > 0 marks the last tracker lost on every ``loss_every``-th sample, to exercise
    the validity mask. START ``params`` may override ``seed``, ``loss_every`` and set
    ``duration_samples`` (the session then finishes by itself after exactly that many samples);
    START ``duration_s`` does the same in seconds.
    """

    def __init__(
        self,
        *,
        trackers: Sequence[tuple[str, str]] = DEFAULT_TRACKERS,
        analog: Sequence[str] = ("trigger",),
        rate_hz: float = 120.0,
        seed: int = 0,
        loss_every: int = 0,
        clock: Callable[[], float] = time.monotonic,
        fail_start: bool = False,
    ) -> None:
        self._info = DriverInfo(
            trackers=tuple(trackers), rate_hz=rate_hz, analog=tuple(analog), capabilities=("cues",)
        )
        self._clock = clock
        self.seed = seed
        self.loss_every = loss_every
        self.fail_start = fail_start
        self.session: SessionContext | None = None
        self.cues: deque[Cue] = deque(maxlen=1000)
        self._t0 = 0.0
        self._emitted = 0
        self._limit: int | None = None
        self._running = False
        self._stop_at: int | None = None

    # ---- PoseSource ---------------------------------------------------------------------
    def describe(self) -> DriverInfo:
        return self._info

    def clock(self) -> float:
        return self._clock()

    def start(self, session: SessionContext, scene: dict[str, Any], params: dict[str, Any]) -> None:
        if self.fail_start:
            raise RuntimeError("driver configured to fail on start")
        if scene.get("invalid"):
            raise ValueError("scene marked invalid")
        self.session = session
        self.seed = int(params.get("seed", self.seed))
        self.loss_every = int(params.get("loss_every", self.loss_every))
        limit = params.get("duration_samples")
        if limit is None and session.duration_s is not None:
            limit = math.ceil(session.duration_s * self._info.rate_hz)
        self._limit = None if limit is None else int(limit)
        self._t0 = self._clock()
        self._emitted = 0
        self._stop_at = None
        self._running = True

    def read(self, now: float) -> Sequence[SampleBlock]:
        if self.session is None:
            return []
        due = math.floor((now - self._t0) * self._info.rate_hz) + 1
        if self._stop_at is not None:
            due = min(due, self._stop_at)
        if self._limit is not None:
            due = min(due, self._limit)
        n = min(due - self._emitted, MAX_BLOCK)
        if n <= 0:
            return []
        first = self._emitted
        poses, analog, valid = self.generate(first, n)
        self._emitted += n
        period = 1.0 / self._info.rate_hz
        return [SampleBlock(self._t0 + first * period, period, poses, analog, valid)]

    def on_cue(self, cue: Cue) -> None:
        self.cues.append(cue)

    def stop(self) -> None:
        if self._running:
            # Everything due up to now is still delivered by the next read, nothing after.
            now = self._clock()
            self._stop_at = math.floor((now - self._t0) * self._info.rate_hz) + 1
            self._running = False

    @property
    def finished(self) -> bool:
        return self._limit is not None and self._emitted >= self._limit

    # ---- the closed form -------------------------------------------------------------------
    @property
    def emitted(self) -> int:
        """Samples produced in the current session."""
        return self._emitted

    def generate(
        self, first: int, n: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Samples first..first+n-1 of a session with this driver's seed and layout."""
        return generate(
            self.seed, first, n, len(self._info.trackers), len(self._info.analog), self.loss_every
        )


PERIOD = 1200  # samples (10 s at 120 Hz): every component of the closed form repeats with it


def generate(
    seed: int, first: int, n: int, n_trackers: int, n_analog: int, loss_every: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Samples first..first+n-1: trackers drift along x, bob in y and turn about y.

    Sample *i* depends only on (seed, i mod `PERIOD`), so one cached table per layout makes a
    read cost a few µs (a 120 Hz rig reads 50 times a second; hundreds run in one benchmark).
    """
    poses_t, analog_t = _table(seed, n_trackers, n_analog)
    lo = first % PERIOD
    if lo + n <= PERIOD:  # the common case: a plain slice
        poses, analog = poses_t[lo : lo + n].copy(), analog_t[lo : lo + n].copy()
    else:
        idx = np.arange(first, first + n) % PERIOD
        poses, analog = poses_t[idx], analog_t[idx]
    valid = np.ones((n, n_trackers), dtype=np.bool_)
    if loss_every > 0:
        lost = (np.arange(first, first + n) % loss_every) == loss_every - 1
        valid[lost, n_trackers - 1] = False
        poses[lost, n_trackers - 1, :] = np.nan
    return poses, analog, valid


@functools.lru_cache(maxsize=64)
def _table(
    seed: int, n_trackers: int, n_analog: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    i = np.arange(PERIOD, dtype=np.float64)[:, None]  # (P, 1)
    t = np.arange(n_trackers, dtype=np.float64)[None, :]  # (1, T)
    phase = (seed % 1000) * 0.001
    poses = np.empty((PERIOD, n_trackers, 7), dtype=np.float32)
    poses[:, :, 0] = 100.0 * t + 0.5 * i
    poses[:, :, 1] = 1000.0 + 10.0 * np.sin(2 * np.pi * (i / 120.0 + phase) + t)
    poses[:, :, 2] = -50.0 * t + seed % 97
    theta = 2 * np.pi * i / PERIOD + t
    poses[:, :, 3] = 0.0
    poses[:, :, 4] = np.sin(theta / 2)
    poses[:, :, 5] = 0.0
    poses[:, :, 6] = np.cos(theta / 2)
    k = np.arange(n_analog, dtype=np.float64)[None, :]
    analog = (((i + k + seed) % 100.0) / 100.0).astype(np.float32).reshape(PERIOD, n_analog)
    poses.flags.writeable = False
    analog.flags.writeable = False
    return poses, analog


__all__ = ["DEFAULT_TRACKERS", "MinimalDriver", "generate"]
