"""The pose-source contract every rig driver implements (simulated trainee, replay, LSL, hardware).

The rig agent (`devices.agent`) owns the wire protocol, the clock probes and the data store; a
driver only turns hardware (or a model) into blocks of samples and shows cues. Like ophyd-async
backends, the same agent runs on real hardware, a replay file or a simulator by swapping the
driver. The contract is a `typing.Protocol`, checked by `check_driver` before the agent uses it.

Threading: the agent calls every method from its one loop thread; a driver that reads hardware
on its own thread must hand samples over itself (e.g. a lock-protected buffer drained by `read`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from lab_controller.protocol import MAX_ANALOG, MAX_TRACKERS, POSE_WIDTH, Cue, TrackerRole


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """What a driver streams: tracker (name, role) pairs in buffer order, rate, analog names."""

    trackers: tuple[tuple[str, str], ...]
    rate_hz: float
    analog: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()  # protocol `Capability` values, e.g. ("cues",)

    def __post_init__(self) -> None:
        if not 1 <= len(self.trackers) <= MAX_TRACKERS:
            raise ValueError(f"a rig streams 1..{MAX_TRACKERS} trackers, not {len(self.trackers)}")
        if len(self.analog) > MAX_ANALOG:
            raise ValueError(f"at most {MAX_ANALOG} analog channels")
        roles = {r.value for r in TrackerRole}
        for name, role in self.trackers:
            if role not in roles:
                raise ValueError(f"tracker {name!r}: role {role!r} is not one of {sorted(roles)}")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"rate_hz must be > 0, not {self.rate_hz}")


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a driver learns about the session it starts (from the controller's START)."""

    session_id: str
    exercise_id: str
    trainee: str
    rubric_version: str = ""
    duration_s: float | None = None


@dataclass(slots=True)
class SampleBlock:
    """Consecutive, regularly spaced samples. Treat as read-only.

    ``poses`` (n, T, 7) float32: x, y, z in mm, quaternion qx, qy, qz, qw (scalar last).
    ``analog`` (n, A) float32. ``valid`` (n, T) bool: False where tracking was lost (the pose
    values there are ignored and sent as NaN). Sample i was taken at rig time
    ``rig_time_first + i * period`` on the driver's `clock`.

    ``checked=True`` is the driver's promise that the arrays already follow the protocol's
    rule (float32 and C-contiguous, NaN exactly where ``valid`` is False, finite elsewhere,
    analog finite), e.g. because it verified a long block once; the agent then encodes the
    slices it is handed without re-checking them. ``all_valid`` (if not None) says whether
    every tracker of every sample is valid. (Not ``frozen``: a frozen dataclass's ``__init__``
    costs several µs, and drivers make ~50 blocks per rig and second.)
    """

    rig_time_first: float
    period: float
    poses: npt.NDArray[np.float32]
    analog: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]
    meta: dict[str, Any] = field(default_factory=dict)
    checked: bool = False
    all_valid: bool | None = None

    @property
    def count(self) -> int:
        return int(self.poses.shape[0])

    def split(self, max_samples: int) -> list[SampleBlock]:
        """This block cut into blocks of at most ``max_samples`` (views, no copies)."""
        if self.poses.shape[0] <= max_samples:
            return [self]
        out = []
        for lo in range(0, self.count, max_samples):
            hi = min(lo + max_samples, self.count)
            out.append(
                SampleBlock(
                    self.rig_time_first + lo * self.period,
                    self.period,
                    self.poses[lo:hi],
                    self.analog[lo:hi],
                    self.valid[lo:hi],
                    checked=self.checked,
                    all_valid=True if self.all_valid else None,
                )
            )
        return out


@runtime_checkable
class PoseSource(Protocol):
    """A rig driver. All times are on the driver's own `clock` (the rig clock)."""

    def describe(self) -> DriverInfo:
        """Trackers, rate and analog channels (constant while the agent runs)."""
        ...

    def clock(self) -> float:
        """The rig clock in seconds that samples are stamped with (monotonic, any epoch).

        The agent answers clock probes with it, so it must be the samples' clock.
        """
        ...

    def start(self, session: SessionContext, scene: dict[str, Any], params: dict[str, Any]) -> None:
        """Begin producing samples for a session; raise `ValueError` for a scene it cannot do."""
        ...

    def read(self, now: float) -> Sequence[SampleBlock]:
        """Samples produced since the last call (zero or more blocks, oldest first)."""
        ...

    def on_cue(self, cue: Cue) -> None:
        """Show (or, for a simulated trainee, react to) a feedback cue."""
        ...

    def stop(self) -> None:
        """Stop producing; a later `read` returns at most what was produced before the stop."""
        ...

    @property
    def finished(self) -> bool:
        """True when the exercise ended by itself (the agent then ends the stream)."""
        ...


def check_driver(driver: object) -> DriverInfo:
    """Verify ``driver`` fulfils `PoseSource` and return its `DriverInfo` (fails early, clearly)."""
    if not isinstance(driver, PoseSource):
        missing = [
            name
            for name in ("describe", "clock", "start", "read", "on_cue", "stop", "finished")
            if not hasattr(driver, name)
        ]
        raise TypeError(f"{type(driver).__name__} is not a PoseSource (missing {missing})")
    info = driver.describe()
    if not isinstance(info, DriverInfo):
        raise TypeError(f"describe() must return DriverInfo, not {type(info).__name__}")
    return info


def check_block(block: SampleBlock, info: DriverInfo) -> None:
    """Raise `ValueError` if a block does not match the driver's declaration."""
    n = block.count
    t, a = len(info.trackers), len(info.analog)
    if block.poses.shape != (n, t, POSE_WIDTH):
        raise ValueError(f"poses shape {block.poses.shape}, want ({n}, {t}, {POSE_WIDTH})")
    if block.analog.shape != (n, a):
        raise ValueError(f"analog shape {block.analog.shape}, want ({n}, {a})")
    if block.valid.shape != (n, t):
        raise ValueError(f"valid shape {block.valid.shape}, want ({n}, {t})")
    if not (math.isfinite(block.period) and block.period > 0 and math.isfinite(block.rig_time_first)):
        raise ValueError("block period must be > 0 and times finite")


__all__ = [
    "DriverInfo",
    "PoseSource",
    "SampleBlock",
    "SessionContext",
    "check_block",
    "check_driver",
]
