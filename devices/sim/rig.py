"""`SimulatedRig`: a `PoseSource` driver whose samples come from a simulated trainee.

The rig clock is the host's monotonic clock with a per-rig offset and a rate error
(``clock_drift_ppm``), so the controller's clock-offset estimation has something to find.
Each `read` returns the samples due up to ``now`` as one block whose period carries the
skill model's rate jitter; the motion reacts to cues; the rig reports ``finished`` when the
exercise is done (or ``duration_s`` from START elapsed).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from devices.driver import DriverInfo, SampleBlock, SessionContext
from devices.sim.skill import SkillModel, skill_by_name
from devices.sim.trainee import DEFAULT_TRACKERS, TraineeMotion
from lab_controller.protocol import Cue, CueDirection

ROLE_OF = {"tool": "tool", "headset": "headset", "off_hand": "off_hand"}
#: The agent may stall (GC, a slow disk); never generate more than this in one read.
MAX_BLOCK_S = 10.0
#: Samples are generated this far ahead of the rig clock (and handed out when due). A block
#: costs ~1 ms of numpy call overhead plus ~5 us per sample (6 trackers), so long blocks
#: amortise it: 2 s vs 0.5 s is ~2.5x less generation CPU per rig. A cue arriving meanwhile
#: takes back the samples not handed out yet (`TraineeMotion.rewind`) and they are generated
#: again knowing the cue, so the look-ahead never delays a reaction.
LOOKAHEAD_S = 2.0


def tracker_specs(names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(name, protocol role) pairs: tool/headset/off_hand keep their role, others are 'other'."""
    return tuple((n, ROLE_OF.get(n, "other")) for n in names)


class _Ahead:
    """One generated block waiting to be handed out: arrays, and how much is handed out."""

    __slots__ = ("analog", "bad", "count", "first", "period", "pos", "poses", "valid")

    def __init__(self, first: float, period: float, poses: NDArray[np.float32],
                 analog: NDArray[np.float32], valid: NDArray[np.bool_], all_valid: bool) -> None:
        self.first = first
        self.period = period
        self.poses = poses
        self.analog = analog
        self.valid = valid
        # samples with a lost tracker before index i: any loss in [i, j) is bad[j] - bad[i]
        # (None: no tracker lost in the whole block, the usual case)
        self.bad: list[int] | None = None
        if not all_valid:
            self.bad = np.concatenate([[0], np.cumsum(~valid.all(axis=1))]).tolist()
        self.count = int(poses.shape[0])
        self.pos = 0  # samples handed out

    def block(self, k: int) -> SampleBlock:
        """Hand out samples [pos, k) (views) and advance ``pos`` to ``k``."""
        lo = self.pos
        self.pos = k
        bad = self.bad
        # positional (meta, checked, all_valid): keywords and the meta default cost ~0.3 µs
        return SampleBlock(self.first + lo * self.period, self.period, self.poses[lo:k],
                           self.analog[lo:k], self.valid[lo:k], {}, True,
                           bad is None or bad[k] == bad[lo])


def skill_from_params(value: Any, default: SkillModel) -> SkillModel:
    """START ``params['skill']``: a preset name, or a dict with optional ``base`` preset."""
    if value is None:
        return default
    if isinstance(value, str):
        return skill_by_name(value)
    if isinstance(value, dict):
        fields = dict(value)
        base = str(fields.pop("base", "custom"))
        return skill_by_name(base, **fields)
    raise ValueError(f"params.skill must be a preset name or a mapping, not {value!r}")


class SimulatedRig:
    """A simulated trainee behind the `devices.driver.PoseSource` contract."""

    def __init__(self, skill: SkillModel | str = "intermediate",
                 trackers: Sequence[str] = DEFAULT_TRACKERS, rate_hz: float = 120.0,
                 seed: int = 0, clock: Callable[[], float] = time.monotonic,
                 clock_offset_s: float | None = None) -> None:
        self.default_skill = skill_by_name(skill) if isinstance(skill, str) else skill
        self.trackers = tuple(trackers)
        if "tool" not in self.trackers:
            raise ValueError("a simulated rig needs a 'tool' tracker")
        self.rate_hz = float(rate_hz)
        self.seed = int(seed)
        self._host_clock = clock
        self._t0 = clock()
        rng = np.random.default_rng([self.seed, 0xC10C])
        # rig clocks start anywhere (here: up to a day): the controller must not assume 0
        self._offset = float(rng.uniform(0, 86400.0)) if clock_offset_s is None else clock_offset_s
        self._ppm = self.default_skill.clock_drift_ppm
        self._rate = 1.0 + self._ppm * 1e-6  # rig seconds per host second
        self._info = DriverInfo(trackers=tracker_specs(self.trackers), rate_hz=self.rate_hz,
                                analog=("trigger",), capabilities=("cues", "self_finish"))
        self.sim: TraineeMotion | None = None
        self._rng = rng
        self._t_start = 0.0
        self._next = 0.0
        self._end = math.inf
        self._stop_at = math.inf  # min(_end, end of the exercise): see `_update_stop`
        self._stopped = True
        self._finished = False
        self.cues_received = 0
        self.session: SessionContext | None = None
        self._ahead: _Ahead | None = None
        self._lookahead = LOOKAHEAD_S

    # --- PoseSource -------------------------------------------------------------------
    def describe(self) -> DriverInfo:
        return self._info

    def clock(self) -> float:
        return self._offset + (self._host_clock() - self._t0) * self._rate

    def start(self, session: SessionContext, scene: dict[str, Any], params: dict[str, Any]) -> None:
        skill = skill_from_params(params.get("skill"), self.default_skill)
        seed = int(params.get("seed", zlib.crc32(session.session_id.encode()) ^ self.seed))
        try:
            self.sim = TraineeMotion(scene, skill, trackers=self.trackers, seed=seed)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot simulate scene of {session.exercise_id!r}: {exc}") from exc
        self.session = session
        self._rng = np.random.default_rng([seed, 0x717])
        self._t_start = self.clock()
        self._next = self._t_start + 1.0 / self.rate_hz
        self._end = self._t_start + (session.duration_s or math.inf)
        self._stopped = False
        self._finished = False
        self._ahead = None
        self._lookahead = LOOKAHEAD_S
        self.cues_received = 0
        self._update_stop()

    def _update_stop(self) -> None:
        """Cache when the session stops (duration or the exercise's end): it only changes when
        the trainee generates or rewinds samples, and `read` needs it every 20 ms."""
        sim = self.sim
        if sim is not None:
            self._stop_at = min(self._end, self._t_start + sim.finished_at)

    def _generate_ahead(self) -> None:
        """Generate the next internal block (``lookahead`` long), to be handed out when due.

        Long blocks amortise numpy's per-call overhead (see `LOOKAHEAD_S`). The block is checked
        once here against the protocol's validity rule (finite where valid, NaN where lost), so
        the agent need not re-check each 20 ms slice of it (`SampleBlock.checked`).
        """
        sim = self.sim
        assert sim is not None
        jitter = sim.skill.rate_jitter
        period = (1.0 / self.rate_hz) * (1.0 + (float(self._rng.normal(0.0, jitter))
                                                if jitter > 0 else 0.0))
        n = max(1, int(self._lookahead * self.rate_hz))
        if self._ahead is None:
            # The first block of a session is a random 1/4..1 of the look-ahead (seeded): rigs
            # started together by a class launch then generate in different agent sweeps
            # instead of all in the same one every `LOOKAHEAD_S` (a 100-rig stall of ~0.2 s).
            n = max(1, int(n * float(self._rng.uniform(0.25, 1.0))))
        first = self._next
        rel = (first - self._t_start) + period * np.arange(n, dtype=np.float64)
        poses, analog, valid = sim.generate(rel)
        all_valid = bool(valid.all())
        if all_valid:  # no boolean-mask copies of the block (the usual case)
            ok = np.isfinite(poses).all() and np.isfinite(analog).all()
        else:
            ok = (np.isfinite(poses[valid]).all() and np.isnan(poses[~valid]).all()
                  and np.isfinite(analog).all())
        if not ok:
            raise ValueError("simulated trainee produced a non-finite value of a valid tracker")
        self._ahead = _Ahead(first, period, poses, analog, valid, all_valid)
        self._next = first + n * period
        self._update_stop()

    def read(self, now: float) -> Sequence[SampleBlock]:
        if self._stopped or self._finished or self.sim is None:
            return ()
        stop_at = self._stop_at
        ah = self._ahead
        if ah is not None and ah.pos < ah.count:
            # the usual read (every 20 ms): the samples due are inside the current block
            k = math.floor(((now if now < stop_at else stop_at) - ah.first) / ah.period + 1e-9) + 1
            if k < ah.count:
                if now >= stop_at:
                    out = [ah.block(k)] if k > ah.pos else []
                    self._finished = True
                    self._ahead = None
                    return out
                return [ah.block(k)] if k > ah.pos else ()
        return self._read_blocks(now)

    def _read_blocks(self, now: float) -> list[SampleBlock]:
        """`read` across the end of the generated block: hand out the rest, generate the next."""
        sim = self.sim
        assert sim is not None
        stop_at = self._stop_at
        limit = min(now, stop_at)
        out: list[SampleBlock] = []
        horizon = min(now, self._next + MAX_BLOCK_S)
        while True:
            ah = self._ahead
            if ah is not None and ah.pos < ah.count:
                k = min(ah.count, math.floor((limit - ah.first) / ah.period + 1e-9) + 1)
                if k > ah.pos:
                    out.append(ah.block(k))
                if k < ah.count:
                    break
            # the block is handed out: the next one if its first sample is due
            if not (self._next <= horizon and self._t_start + sim.finished_at >= self._next):
                break
            self._generate_ahead()
            stop_at = self._stop_at
            limit = min(now, stop_at)
        if now >= stop_at:
            self._finished = True
            self._ahead = None
        return out

    def on_cue(self, cue: Cue) -> None:
        self.cues_received += 1
        if self.sim is None or cue.direction in (CueDirection.HOLD, CueDirection.NONE):
            return
        ah = self._ahead
        if ah is not None and 0 < ah.pos < ah.count and not self._finished:
            # samples generated ahead but not handed out are generated again knowing the cue
            # (read hands out a block's first sample when it generates it, so pos > 0 here
            # unless the session is ending)
            self.sim.rewind(ah.pos)
            self._next = ah.first + ah.pos * ah.period
            ah.count = ah.pos
            self._update_stop()
        self.sim.cue(cue.parameter, at=self.clock() - self._t_start)

    def stop(self) -> None:
        self._stopped = True

    @property
    def finished(self) -> bool:
        return self._finished


def warmup(scenes: Iterable[Mapping[str, Any]], trackers: Sequence[str] = DEFAULT_TRACKERS
           ) -> float:
    """Compile (or load from numba's on-disk cache) the simulation kernels now; seconds taken.

    Call it in a rig process before its rigs register. Otherwise the first session's first read
    compiles them: ~11 s with a cold cache (a fresh clone) and ~1 s from the cache, with every
    rig of the process silent meanwhile. That is long enough for the controller to declare them
    dead (3 missed 1 s heartbeats) and for the rigs to re-register and re-send.
    """
    t0 = time.perf_counter()
    now = [0.0]  # a fake clock: one read, 0.1 s after the start
    for scene in scenes:
        now[0] = 0.0
        rig = SimulatedRig("novice", trackers=trackers, seed=0, clock=lambda: now[0])
        rig.start(SessionContext("warmup", str(scene.get("exercise_id", "warmup")), "warmup"),
                  dict(scene), {})
        now[0] = 0.1
        if not rig.read(rig.clock()):
            raise RuntimeError(f"warm-up of {scene.get('exercise_id')!r} produced no samples")
        rig.stop()
    return time.perf_counter() - t0


def make_driver(rig_index: int, seed: int) -> SimulatedRig:
    """Factory for ``python -m devices.agent --driver devices.sim.rig:make_driver``: skills
    cycle expert, intermediate, novice by rig index (use `devices.fleet` for a skill mix)."""
    skill = ("expert", "intermediate", "novice")[rig_index % 3]
    return SimulatedRig(skill, seed=seed)
