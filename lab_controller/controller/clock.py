"""Rig clock offset from four-timestamp exchanges (as NTP and LSL do).

t0 controller sends, t1 rig receives, t2 rig replies, t3 controller receives:
offset = ((t1 - t0) + (t2 - t3)) / 2   (rig clock minus controller clock)
rtt    = (t3 - t0) - (t2 - t1)
The estimate is the probe with the smallest round trip among the last `window` probes: the
shortest trip has the least queueing asymmetry, which is what LSL does with 8 probes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# LSL keeps the best of 8 probes (performance.md, "Lessons"); we follow it.
DEFAULT_WINDOW = 8


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One probe's result in seconds."""

    offset: float
    rtt: float
    at: float  # controller time of t3


def four_timestamp(t0: float, t1: float, t2: float, t3: float) -> tuple[float, float]:
    """(offset, rtt) of one probe; offset is rig minus controller."""
    offset = ((t1 - t0) + (t2 - t3)) / 2.0
    rtt = (t3 - t0) - (t2 - t1)
    return offset, rtt


class ClockEstimator:
    """Per-rig running estimate: min-RTT probe of the last `window`."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self.probes = 0
        self.rejected = 0

    def add(self, t0: float, t1: float, t2: float, t3: float) -> ClockSample | None:
        """Add one probe; implausible probes (non-finite, negative RTT) are counted and dropped."""
        self.probes += 1
        if not all(math.isfinite(v) for v in (t0, t1, t2, t3)):
            self.rejected += 1
            return None
        offset, rtt = four_timestamp(t0, t1, t2, t3)
        # Tolerate tiny negative RTT from clock granularity (1 µs); anything else is bogus.
        if rtt < -1e-6 or t3 < t0:
            self.rejected += 1
            return None
        sample = ClockSample(offset=offset, rtt=max(rtt, 0.0), at=t3)
        self._samples.append(sample)
        return sample

    @property
    def known(self) -> bool:
        """True once at least one plausible probe has been seen."""
        return bool(self._samples)

    @property
    def best(self) -> ClockSample | None:
        """The min-RTT probe of the window, or None before the first probe."""
        if not self._samples:
            return None
        return min(self._samples, key=lambda s: s.rtt)

    @property
    def offset(self) -> float | None:
        """Rig clock minus controller clock in seconds (None if unknown)."""
        b = self.best
        return None if b is None else b.offset

    @property
    def rtt(self) -> float | None:
        """Round trip of the best probe in seconds (None if unknown)."""
        b = self.best
        return None if b is None else b.rtt

    def to_controller_time(self, rig_time: float) -> float | None:
        """A rig timestamp expressed in the controller clock (None while the offset is unknown)."""
        off = self.offset
        return None if off is None else rig_time - off

    def reset(self) -> None:
        """Forget all probes (a rig that reconnects may have rebooted and changed clock)."""
        self._samples.clear()
