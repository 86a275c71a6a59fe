"""`ReplayRig`: a `PoseSource` that plays a recording back, at real speed or as fast as possible.

Timing is preserved: every recorded block comes out with the same period, the same number
of samples and the same spacing to its neighbours (so recorded gaps stay gaps). The whole
stream is shifted by one constant so that it starts now on the replay rig's clock; the
original rig time of each block travels in ``SampleBlock.meta['recorded_rig_time_first']``.

* ``speed=1.0`` (real time): the clock is the host's monotonic clock; a block is handed out
  once its last sample is due, as the original rig produced it.
* ``speed=k``: time stamps and periods are divided by ``k`` (a 2x replay of a 120 Hz stream
  is a 240 Hz stream, and announced as such).
* ``speed=math.inf`` (as fast as possible): the clock is virtual — it is the rig time of the
  newest sample handed out, so each `read` hands out the next ``burst_s`` of the recording
  and clock probes stay consistent with the samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devices.driver import DriverInfo, SampleBlock, SessionContext
from devices.recording import Recording, read_export
from lab_controller.protocol import Cue


def load_any(path: str | Path, **export_options: Any) -> Recording:
    """A recording NPZ, or a telemetry export (``.csv``, ``.parquet``; ``export_options`` go
    to `read_export`, e.g. tracker_names, roles, analog_names, rate_hz)."""
    p = Path(path)
    if p.suffix.lower() in (".csv", ".parquet", ".pq"):
        return read_export(p, **export_options)
    return Recording.load(p)


class ReplayRig:
    """Plays ``recording`` (every START plays it from the beginning)."""

    def __init__(self, recording: Recording | str | Path, speed: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, burst_s: float = 1.0) -> None:
        self.rec = recording if isinstance(recording, Recording) else load_any(recording)
        if not speed > 0:
            raise ValueError("speed must be > 0 (math.inf = as fast as possible)")
        self.speed = float(speed)
        self.burst_s = burst_s
        self._host_clock = clock
        base = self.rec.info
        rate = base.rate_hz * (1.0 if math.isinf(self.speed) else self.speed)
        self._info = DriverInfo(trackers=base.trackers, rate_hz=rate, analog=base.analog,
                                capabilities=("self_finish",))
        self._virtual = 0.0
        self._blocks: list[SampleBlock] = []
        self._next = 0
        self._shift = 0.0
        self._finished = False
        self._stopped = True
        self.cues_received = 0

    @property
    def fast(self) -> bool:
        return math.isinf(self.speed)

    def describe(self) -> DriverInfo:
        return self._info

    def clock(self) -> float:
        return self._virtual if self.fast else self._host_clock()

    def start(self, session: SessionContext, scene: dict[str, Any], params: dict[str, Any]) -> None:
        if self.rec.n == 0:
            raise ValueError("the recording holds no samples")
        self._blocks = list(self.rec.iter_blocks())
        t0 = self._blocks[0].rig_time_first
        k = 1.0 if self.fast else self.speed
        # start one period from now, keep every interval (divided by the speed)
        self._start_clock = self.clock() + self._blocks[0].period / k
        self._t0 = t0
        self._k = k
        self._next = 0
        self._finished = False
        self._stopped = False

    def _shifted(self, b: SampleBlock) -> SampleBlock:
        first = self._start_clock + (b.rig_time_first - self._t0) / self._k
        return SampleBlock(first, b.period / self._k, b.poses, b.analog, b.valid,
                           {"recorded_rig_time_first": b.rig_time_first,
                            "recorded_period": b.period})

    def read(self, now: float) -> Sequence[SampleBlock]:
        if self._stopped or self._finished:
            return ()
        out: list[SampleBlock] = []
        limit = max(self._virtual, self._start_clock) + self.burst_s if self.fast else now
        while self._next < len(self._blocks):
            blk = self._shifted(self._blocks[self._next])
            last = blk.rig_time_first + (blk.count - 1) * blk.period
            if last > limit + 1e-9:
                break
            out.append(blk)
            self._next += 1
            if self.fast:
                self._virtual = max(self._virtual, last)
        if self._next >= len(self._blocks):
            self._finished = True
        return out

    def on_cue(self, cue: Cue) -> None:
        self.cues_received += 1  # a recording cannot react; counted for the report

    def stop(self) -> None:
        self._stopped = True

    @property
    def finished(self) -> bool:
        return self._finished


def replay_samples(rig: ReplayRig) -> tuple[np.ndarray, np.ndarray]:
    """Drain a fast replay: (times, poses) of every sample (for tests and tools)."""
    ts, ps = [], []
    while not rig.finished:
        for b in rig.read(rig.clock()):
            ts.append(b.rig_time_first + b.period * np.arange(b.count))
            ps.append(b.poses)
    return np.concatenate(ts), np.concatenate(ps)
