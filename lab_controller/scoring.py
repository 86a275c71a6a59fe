"""Per-session scoring for the controller: sample chunks in, score windows and cues out.

The controller builds one :class:`SessionScorer` per running session and calls
:meth:`SessionScorer.feed` with every chunk it receives (in sequence order, duplicates already
dropped), then :meth:`SessionScorer.finish` once when the session stops. Pure computation:
numpy and ``sim_kernels`` only (no sockets, no database).

Exercise inputs:

* ``geometry``: dict, see :class:`sim_kernels.process.WeldGeometry` /
  :class:`~sim_kernels.process.SprayGeometry` (``line_start``, ``line_end``, ``normal``,
  optional ``second_normal``, ``tip_offset``; or ``point``, ``normal``, ``pass_direction``,
  ``fan_width_mm``), millimetres in the lab frame.
* ``reference``: the **expert's tool poses** ``(m, 7)`` ``[x, y, z, qx, qy, qz, qw]`` (mm,
  scalar-last quaternion), i.e. exactly what a rig streams for the tool tracker, recorded
  from an expert doing the exercise; sampled at ``reference_rate`` (default ``sample_rate``).
  The scorer derives the expert's process parameters with the same kernels as the trainee's,
  so a change of formula never leaves the reference stale. ``None``: no expert component.
* ``rubric``: :class:`sim_kernels.rubric.Rubric`.
* ``sample_rate``: the rig's nominal rate (Hz); ``tool_index``: which tracker is the tool.

Rig times are the rig clock (seconds) carried by the chunks; row ``r`` of the session has
the rig time ``rig_time_first + k * period`` of the chunk sample it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from sim_kernels.parameters import CUE_TEXT, UNITS
from sim_kernels.rubric import Rubric
from sim_kernels.scoring import ComponentScores, MetricBreakdown
from sim_kernels.session import ExerciseModel, SessionMetrics

#: Sample periods may deviate this much from 1/sample_rate (tracker clocks drift by ppm;
#: 5 % catches a misconfigured rate, e.g. a 90 Hz stream scored as 120 Hz).
PERIOD_TOLERANCE = 0.05


@dataclass(frozen=True)
class MetricWindow:
    """One parameter over one real-time window."""

    mean: float  # NaN if not observed in the window
    std: float
    fraction_in_window: float  # 0..1, NaN if not observed
    observations: int


@dataclass(frozen=True)
class ScoreWindow:
    """A completed real-time window (``rubric.realtime.window_s`` long)."""

    rig_time: float  # rig time of the window's first sample (s)
    duration_s: float
    metrics: dict[str, MetricWindow]
    score: float  # 0..100 time-in-window of this window (NaN if nothing observed)
    progress: float  # 0..1 through the expert reference (NaN without reference)
    distance: float  # running open-end DTW distance to the expert (NaN without reference)


@dataclass(frozen=True)
class Cue:
    """Feedback for the trainee: a parameter left (or came back into) its window."""

    parameter: str
    direction: str  # e.g. "too_fast", "too_steep"; "ok" when the cue clears
    message: str
    severity: str  # "warning", "critical" (beyond the window by > half its width), "info"
    rig_time: float
    active: bool  # False: the cue clears


@dataclass(frozen=True)
class DataQuality:
    """How much of the score rests on real samples."""

    samples: int
    valid_samples: int
    interpolated_fraction: float  # bridged short gaps / samples
    gap_fraction: float  # samples left out (long gaps) / samples
    gaps: int  # number of long gaps
    longest_gap_s: float


@dataclass(frozen=True)
class MotionSummary:
    """Motion quality of the tool tip (see sim_kernels.motion)."""

    sparc: float
    ldlj: float
    path_length_mm: float
    idle_time_s: float
    submovements: int
    movement_time_s: float


@dataclass(frozen=True)
class FinalResult:
    """The session's mark under one rubric version, with the reasons behind it."""

    rubric_id: str
    rubric_version: int
    score: float  # 0..100, 2 decimals
    passed: bool
    level: int | None  # 5 (五级/初级工) .. 1 (一级/高级技师), None below every threshold
    level_name: str
    components: ComponentScores
    metrics: tuple[MetricBreakdown, ...]
    weakest_parameter: str  # "" when every parameter stayed in its window
    expert_rms: float
    progress: float
    motion: MotionSummary
    data_quality: DataQuality


class SessionScorer:
    """Scores one session while it runs (see module doc for the inputs)."""

    def __init__(self, geometry: dict[str, Any], reference: NDArray[np.floating] | None,
                 rubric: Rubric, sample_rate: float, tool_index: int,
                 reference_rate: float | None = None, max_gap_s: float = 0.1) -> None:
        if tool_index < 0:
            raise ValueError("tool_index must be >= 0")
        self.model = ExerciseModel.build(rubric, geometry, sample_rate, reference,
                                         reference_rate, max_gap_s=max_gap_s)
        self._tool = int(tool_index)
        self._metrics = SessionMetrics(self.model)
        self._metrics.check_period(PERIOD_TOLERANCE)
        self._finished = False
        names = self.model.names
        self._cue_text = [CUE_TEXT[n] for n in names]
        self._width = self.model.hi - self.model.lo

    @classmethod
    def from_model(cls, model: ExerciseModel, tool_index: int) -> SessionScorer:
        """A scorer sharing a prebuilt :class:`ExerciseModel` (one per exercise, many rigs)."""
        self = cls.__new__(cls)
        self.model = model
        self._tool = int(tool_index)
        self._metrics = SessionMetrics(model)
        self._metrics.check_period(PERIOD_TOLERANCE)
        self._finished = False
        self._cue_text = [CUE_TEXT[n] for n in model.names]
        self._width = model.hi - model.lo
        return self

    def feed(self, rig_time_first: float, period: float, poses: NDArray[np.floating],
             valid: NDArray[np.bool_]) -> tuple[list[ScoreWindow], list[Cue]]:
        """Consume one chunk: ``poses`` (n, trackers, 7) float32, ``valid`` (n, trackers)."""
        if self._finished:
            raise ValueError("session already finished")
        if poses.ndim != 3 or valid.ndim != 2:
            self._reject(period, poses, valid)
        # shapes, tool index and period are checked in the kernel (cheaper than from Python)
        code = self._metrics.feed_chunk(poses, valid, self._tool, float(rig_time_first),
                                        float(period))
        if code == 0:  # the common case: no window completed, no cue changed
            return [], []
        if code < 0:
            self._reject(period, poses, valid)
        windows, events = self._metrics.collect(code)
        return self._convert(windows, events)

    def _reject(self, period: float, poses: NDArray[np.floating],
                valid: NDArray[np.bool_]) -> NoReturn:
        """Raise the ValueError saying what is wrong with a chunk the kernel refused."""
        if poses.ndim != 3 or poses.shape[2] != 7 or valid.shape != poses.shape[:2]:
            raise ValueError(f"need poses (n, trackers, 7) and valid (n, trackers), got "
                             f"{poses.shape} and {valid.shape}")
        if self._tool >= poses.shape[1]:
            raise ValueError(f"tool tracker {self._tool} not in a {poses.shape[1]}-tracker chunk")
        if not abs(period * self.model.fs - 1.0) <= PERIOD_TOLERANCE:
            raise ValueError(f"period {period} s does not match {self.model.fs} Hz")
        raise ValueError("chunk rejected")  # pragma: no cover - the kernel has no other reason

    def _convert(self, windows: list[Any], events: list[Any]
                 ) -> tuple[list[ScoreWindow], list[Cue]]:
        names = self.model.names
        out_w: list[ScoreWindow] = []
        for w in windows:
            mets = {}
            # Python floats (st.tolist()): the same IEEE values, without numpy scalar costs
            for name, (c, inside, mean, std, _) in zip(names, w.stats.tolist(), strict=True):
                cnt = int(c)
                mets[name] = MetricWindow(
                    mean=mean, std=std,
                    fraction_in_window=inside / cnt if cnt else math.nan,
                    observations=cnt)
            out_w.append(ScoreWindow(rig_time=self._metrics.rig_time(w.start),
                                     duration_s=w.length / self.model.fs, metrics=mets,
                                     score=w.score, progress=w.progress, distance=w.distance))
        out_c: list[Cue] = []
        for row, e in events:
            name = names[e.param]
            t = self._metrics.rig_time(row)
            if e.active:
                direction, message = self._cue_text[e.param][0 if e.direction < 0 else 1]
                v = self._metrics.observation(row, e.param)
                edge = self.model.lo[e.param] if e.direction < 0 else self.model.hi[e.param]
                severe = abs(v - edge) > 0.5 * self._width[e.param]
                out_c.append(Cue(name, direction, message, "critical" if severe else "warning",
                                 t, True))
            else:
                label = name.replace("_", " ")
                out_c.append(Cue(name, "ok", f"{label[0].upper()}{label[1:]} back in range "
                                 f"({UNITS[name]})", "info", t, False))
        return out_w, out_c

    def finish(self) -> FinalResult:
        """End of session: the final mark (same arithmetic as batch re-scoring)."""
        if self._finished:
            raise ValueError("session already finished")
        self._finished = True
        s = self._metrics.finish()
        r = s.result
        n = max(1, s.samples)
        m = s.motion
        return FinalResult(
            rubric_id=r.rubric_id, rubric_version=r.rubric_version, score=r.score,
            passed=r.passed, level=r.level, level_name=r.level_name, components=r.components,
            metrics=r.metrics, weakest_parameter=r.weakest, expert_rms=r.expert_rms,
            progress=s.progress,
            motion=MotionSummary(m[0], m[1], m[2], m[3], int(m[4]), m[5]),
            data_quality=DataQuality(
                samples=s.samples, valid_samples=s.valid_samples,
                interpolated_fraction=s.interpolated_samples / n,
                gap_fraction=(s.samples - s.valid_samples) / n, gaps=s.gaps,
                longest_gap_s=s.longest_gap_samples / self.model.fs))
