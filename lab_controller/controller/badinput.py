"""Counting bad input per kind and logging it once per burst.

A flood of garbage must not flood the log: the first occurrence of a kind is logged, later ones
within `burst_s` are only counted, and the next log line says how many were suppressed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("lab_controller.controller.badinput")

# One log line per kind per 10 s: enough for an operator to notice, quiet under a flood.
DEFAULT_BURST_S = 10.0


class BadInputCounter:
    """Per-kind counters (exposed in status) with burst-limited logging."""

    def __init__(
        self, burst_s: float = DEFAULT_BURST_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.counts: Counter[str] = Counter()
        self._burst_s = burst_s
        self._clock = clock
        self._last_log: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def record(self, kind: str, detail: str = "", peer: str = "") -> None:
        """Count one bad input of `kind`; log it unless a line for `kind` was logged recently."""
        self.counts[kind] += 1
        now = self._clock()
        last = self._last_log.get(kind)
        if last is not None and now - last < self._burst_s:
            self._suppressed[kind] += 1
            return
        self._last_log[kind] = now
        extra = self._suppressed.pop(kind, 0)
        more = f" (+{extra} more since last report)" if extra else ""
        who = f" from {peer}" if peer else ""
        log.warning("bad input %s%s: %s%s", kind, who, detail[:200], more)

    def snapshot(self) -> dict[str, int]:
        """Counts per kind (a copy)."""
        return dict(self.counts)

    @property
    def total(self) -> int:
        """All bad inputs seen."""
        return sum(self.counts.values())
