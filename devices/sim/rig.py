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
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from devices.driver import DriverInfo, SampleBlock, SessionContext
from devices.sim.skill import SkillModel, skill_by_name
from devices.sim.trainee import DEFAULT_TRACKERS, TraineeMotion
from lab_controller.protocol import Cue, CueDirection

ROLE_OF = {"tool": "tool", "headset": "headset", "off_hand": "off_hand"}
#: The agent may stall (GC, a slow disk); never generate more than this in one read.
MAX_BLOCK_S = 10.0
#: Samples are generated up to this far ahead of the rig clock (and handed out when due);
#: capped per trainee at 0.9 x reaction_s so that a cue's onset always lies after the samples
#: already generated (see `_generate_ahead`). 0.5 s vs 0.25 s: 1.4x more rigs per core.
LOOKAHEAD_S = 0.5


def tracker_specs(names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(name, protocol role) pairs: tool/headset/off_hand keep their role, others are 'other'."""
    return tuple((n, ROLE_OF.get(n, "other")) for n in names)


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
        self._info = DriverInfo(trackers=tracker_specs(self.trackers), rate_hz=self.rate_hz,
                                analog=("trigger",), capabilities=("cues", "self_finish"))
        self.sim: TraineeMotion | None = None
        self._rng = rng
        self._t_start = 0.0
        self._next = 0.0
        self._end = math.inf
        self._stopped = True
        self._finished = False
        self.cues_received = 0
        self.session: SessionContext | None = None
        self._pending: deque[SampleBlock] = deque()
        self._lookahead = LOOKAHEAD_S

    # --- PoseSource -------------------------------------------------------------------
    def describe(self) -> DriverInfo:
        return self._info

    def clock(self) -> float:
        return self._offset + (self._host_clock() - self._t0) * (1.0 + self._ppm * 1e-6)

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
        self._pending.clear()
        self._lookahead = min(LOOKAHEAD_S, 0.9 * skill.reaction_s)
        self.cues_received = 0

    def _generate_ahead(self) -> None:
        """Generate the next internal block (``lookahead`` long) into the pending queue.

        Generating up to 0.5 s at a time amortises numpy's per-call overhead (the cost of a block
        hardly depends on its length below a few hundred samples). It stays shorter than the
        trainee's reaction time, so a cue still changes every sample after its onset.
        """
        sim = self.sim
        assert sim is not None
        jitter = sim.skill.rate_jitter
        period = (1.0 / self.rate_hz) * (1.0 + (float(self._rng.normal(0.0, jitter))
                                                if jitter > 0 else 0.0))
        n = max(1, int(self._lookahead * self.rate_hz))
        first = self._next
        rel = (first - self._t_start) + period * np.arange(n, dtype=np.float64)
        poses, analog, valid = sim.generate(rel)
        self._pending.append(SampleBlock(first, period, poses, analog, valid))
        self._next = first + n * period

    def read(self, now: float) -> Sequence[SampleBlock]:
        sim = self.sim
        if sim is None or self._stopped or self._finished:
            return ()
        horizon = min(now, self._next + MAX_BLOCK_S)
        while self._next <= horizon and self._t_start + sim.finished_at >= self._next:
            self._generate_ahead()
        stop_at = min(self._end, self._t_start + sim.finished_at)
        limit = min(now, stop_at)
        out: list[SampleBlock] = []
        while self._pending:
            blk = self._pending[0]
            k = math.floor((limit - blk.rig_time_first) / blk.period + 1e-9) + 1
            if k <= 0:
                break
            if k >= blk.count:
                out.append(blk)
                self._pending.popleft()
                continue
            head = SampleBlock(blk.rig_time_first, blk.period, blk.poses[:k], blk.analog[:k],
                               blk.valid[:k])
            out.append(head)
            self._pending[0] = SampleBlock(blk.rig_time_first + k * blk.period, blk.period,
                                           blk.poses[k:], blk.analog[k:], blk.valid[k:])
            break
        if now >= stop_at:
            self._finished = True
            self._pending.clear()
        return out

    def on_cue(self, cue: Cue) -> None:
        self.cues_received += 1
        if self.sim is None or cue.direction in (CueDirection.HOLD, CueDirection.NONE):
            return
        self.sim.cue(cue.parameter, at=self.clock() - self._t_start)

    def stop(self) -> None:
        self._stopped = True

    @property
    def finished(self) -> bool:
        return self._finished


def make_driver(rig_index: int, seed: int) -> SimulatedRig:
    """Factory for ``python -m devices.agent --driver devices.sim.rig:make_driver``: skills
    cycle expert, intermediate, novice by rig index (use `devices.fleet` for a skill mix)."""
    skill = ("expert", "intermediate", "novice")[rig_index % 3]
    return SimulatedRig(skill, seed=seed)
