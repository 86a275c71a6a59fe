"""Rig registry: who is registered, on which connection, alive or not, and what it reported.

Liveness is application-level: any message from a rig on the control socket refreshes it, and a
rig is dead after `liveness` missed heartbeat intervals (architecture.md: ~1 s, 3 missed). The
clock is injected so the rules are testable without sleeping.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lab_controller.controller.clock import ClockEstimator
from lab_controller.protocol import ChannelLayout, Hello, RigState

# Rate is measured over the last 2 s of received samples: long enough to smooth 20 ms chunks,
# short enough that a stalled stream shows within a couple of table refreshes.
RATE_WINDOW_S = 2.0


@dataclass(slots=True)
class RigRecord:
    """Everything the controller knows about one rig."""

    rig_id: str
    handle: int
    identity: bytes  # ROUTER routing id of its current control connection
    hello: Hello
    layout: ChannelLayout
    registered_at: float  # wall clock
    last_seen: float  # monotonic
    alive: bool = True
    dead_since: float | None = None  # monotonic
    state: RigState = RigState.IDLE
    session_id: str | None = None  # as the rig reports it
    next_seq: int | None = None
    backlog_chunks: int = 0
    backlog_bytes: int = 0
    trackers_valid: list[bool] | None = None
    tracker_seen: list[float] = field(default_factory=list)  # monotonic, last valid per tracker
    last_heartbeat_wall: float | None = None
    clock: ClockEstimator = field(default_factory=ClockEstimator)
    chunks: int = 0
    samples: int = 0
    reconnects: int = 0
    _rate: deque[tuple[float, int]] = field(default_factory=deque)

    def note_samples(self, now: float, count: int) -> None:
        """Account `count` received samples at monotonic `now` (for the rate column)."""
        self.chunks += 1
        self.samples += count
        self._rate.append((now, count))
        while self._rate and now - self._rate[0][0] > RATE_WINDOW_S:
            self._rate.popleft()

    def rate(self, now: float) -> float:
        """Samples per second over the last `RATE_WINDOW_S`.

        Read-only, so any thread may call it (the demo's live view and the operations metrics
        do) while the loop appends: `tuple()` copies the deque in one C call under the GIL,
        where iterating it in Python could meet a concurrent append ("deque mutated during
        iteration") and popping here could race the loop's own expiry."""
        since = now - RATE_WINDOW_S
        return sum(c for t, c in tuple(self._rate) if t >= since) / RATE_WINDOW_S

    def note_trackers(self, now: float, valid: list[bool]) -> None:
        """Record a heartbeat's per-tracker validity (monotonic `now`)."""
        self.trackers_valid = list(valid)
        if len(self.tracker_seen) != len(self.hello.trackers):
            self.tracker_seen = [-math.inf] * len(self.hello.trackers)
        for i, ok in enumerate(valid[: len(self.tracker_seen)]):
            if ok:
                self.tracker_seen[i] = now

    def missing_trackers(self, now: float, window_s: float) -> list[str]:
        """Trackers not reported valid within `window_s` (a moment's occlusion is not absence).

        A rig that never reports validity (the field is optional) is taken at its word."""
        if self.trackers_valid is None:
            return []
        return [t.name for t, seen in zip(self.hello.trackers, self.tracker_seen, strict=False)
                if now - seen > window_s]

    @property
    def trackers_present(self) -> bool:
        """Every declared tracker reported valid in the latest heartbeat (or nothing reported)."""
        if self.trackers_valid is None:
            return bool(self.hello.trackers)
        return len(self.trackers_valid) == len(self.hello.trackers) and all(self.trackers_valid)

    def to_dict(self, now: float, wall_now: float) -> dict[str, Any]:
        """Row for the `labctl rigs` table and the API."""
        return {
            "rig_id": self.rig_id,
            "alive": self.alive,
            "state": self.state.value if self.alive else "dead",
            "session_id": self.session_id,
            "trackers": [t.name for t in self.hello.trackers],
            "trackers_present": self.trackers_present,
            "rate_hz_declared": self.hello.rate_hz,
            "rate_hz": round(self.rate(now), 1),
            "last_seen_s": round(now - self.last_seen, 3),
            "last_heartbeat": self.last_heartbeat_wall,
            "clock_offset_s": self.clock.offset,
            "clock_rtt_s": self.clock.rtt,
            "backlog_chunks": self.backlog_chunks,
            "backlog_bytes": self.backlog_bytes,
            "chunks": self.chunks,
            "samples": self.samples,
            "reconnects": self.reconnects,
            "software_version": self.hello.software_version,
            "registered_at": self.registered_at,
            "dead_since_s": None if self.dead_since is None else round(now - self.dead_since, 3),
            "wall_time": wall_now,
        }


class RigRegistry:
    """Rigs by id, by connection identity and by chunk handle."""

    def __init__(
        self,
        heartbeat_interval_s: float,
        liveness: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self.liveness = liveness
        self._clock = clock
        self._by_id: dict[str, RigRecord] = {}
        self._by_identity: dict[bytes, str] = {}
        self._by_handle: dict[int, str] = {}

    @property
    def dead_after_s(self) -> float:
        return self.heartbeat_interval_s * self.liveness

    def __iter__(self) -> Iterator[RigRecord]:
        return iter(sorted(self._by_id.values(), key=lambda r: r.rig_id))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, rig_id: str) -> RigRecord | None:
        return self._by_id.get(rig_id)

    def by_identity(self, identity: bytes) -> RigRecord | None:
        rid = self._by_identity.get(identity)
        return None if rid is None else self._by_id.get(rid)

    def by_handle(self, handle: int) -> RigRecord | None:
        rid = self._by_handle.get(handle)
        return None if rid is None else self._by_id.get(rid)

    def register(
        self, hello: Hello, layout: ChannelLayout, identity: bytes, wall_now: float
    ) -> tuple[RigRecord, bool]:
        """Add or refresh a rig from its HELLO; returns (record, was_known_before)."""
        now = self._clock()
        rec = self._by_id.get(hello.rig_id)
        if rec is None:
            handle = self._new_handle()
            rec = RigRecord(
                rig_id=hello.rig_id, handle=handle, identity=identity, hello=hello,
                layout=layout, registered_at=wall_now, last_seen=now,
            )
            self._by_id[hello.rig_id] = rec
            self._by_handle[handle] = hello.rig_id
            known = False
        else:
            self._by_identity.pop(rec.identity, None)
            rec.identity = identity
            if rec.layout.layout_id != layout.layout_id:
                rec.clock.reset()
            rec.hello = hello
            rec.layout = layout
            rec.last_seen = now
            rec.reconnects += 1
            rec.clock.reset()  # a reconnecting rig may have rebooted: its clock may differ
            known = True
        rec.alive = True
        rec.dead_since = None
        rec.trackers_valid = None
        rec.tracker_seen = []
        rec.state = hello.active_session.state if hello.active_session else RigState.IDLE
        rec.session_id = hello.active_session.session_id if hello.active_session else None
        self._by_identity[identity] = hello.rig_id
        return rec, known

    def _new_handle(self) -> int:
        """A random non-zero u32 handle not in use: handles are never reused by this process
        and, being random, almost never collide with a previous process's (docs/protocol.md §12),
        so a stale chunk from before a restart is not taken for another rig's."""
        while True:
            handle = secrets.randbits(32)
            if handle and handle not in self._by_handle:
                return handle

    def touch(self, rec: RigRecord) -> None:
        """Any message from the rig proves it alive."""
        rec.last_seen = self._clock()

    def expire(self) -> list[RigRecord]:
        """Mark rigs dead whose last message is older than `dead_after_s`; return the new dead."""
        now = self._clock()
        newly: list[RigRecord] = []
        for rec in self._by_id.values():
            if rec.alive and now - rec.last_seen > self.dead_after_s:
                rec.alive = False
                rec.dead_since = now
                self._by_identity.pop(rec.identity, None)
                newly.append(rec)
        return newly

    def alive(self) -> list[RigRecord]:
        return [r for r in self if r.alive]
