"""Data pipeline hook: per-session observers (scoring, telemetry) fed with every new chunk.

`SessionObserver` is the contract: `on_start` when a session starts (or is adopted after a
controller restart), `on_chunk` for every chunk accepted for the first time (duplicates never
reach it) returning cues to send to the rig, `on_end` once with the final state. The controller
runs observers on one worker thread (`ObserverRunner`) behind a bounded queue, so a slow scorer
slows the data socket (back-pressure) but never the heartbeats; cues come back through a queue
and a wake-up callback to the socket thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lab_controller.protocol import Cue, SampleChunk

log = logging.getLogger(__name__)

# 1024 chunks ≈ 200 rigs × 5 chunks: a ~0.1 s hiccup of the scorer at the target load
# (performance.md: 200 rigs × 120 Hz, 12-30 samples per chunk) before the data socket pauses.
DEFAULT_QUEUE_CHUNKS = 1024
WAIT_KEEP = 10_000  # latency samples kept for the status percentiles


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What an observer needs to set itself up for one session."""

    session_id: str
    rig_id: str
    exercise_id: str
    trainee: str
    rubric_version: str
    trackers: tuple[str, ...]
    roles: tuple[str, ...]
    analog: tuple[str, ...]
    rate_hz: float
    clock_offset_s: float | None  # rig clock minus controller clock, when known
    resumed: bool = False  # True: adopted after a controller restart (earlier chunks not seen)
    params: dict[str, Any] = field(default_factory=dict)
    class_id: str | None = None  # the class launch this session belongs to, if any
    duration_s: float | None = None


@runtime_checkable
class SessionObserver(Protocol):
    """A per-session consumer of the data stream (e.g. the scorer, the telemetry writer)."""

    def on_start(self, info: SessionInfo) -> None:
        """The session starts (or is resumed/adopted); set up per-session state."""

    def on_chunk(self, session_id: str, chunk: SampleChunk) -> Sequence[Cue]:
        """A new chunk, in arrival order; return cues for the rig (may be empty)."""

    def on_end(self, session_id: str, final_state: str) -> None:
        """The session reached `final_state` (finished/aborted/failed); release state."""


class NullObserver:
    """Does nothing: the default when no scoring or telemetry is plugged in."""

    def on_start(self, info: SessionInfo) -> None:
        return None

    def on_chunk(self, session_id: str, chunk: SampleChunk) -> Sequence[Cue]:
        return ()

    def on_end(self, session_id: str, final_state: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Job:
    kind: str  # "start" | "chunk" | "end"
    session_id: str
    payload: Any
    received_at: float  # time.monotonic() when the chunk arrived (cue latency accounting)


class ObserverRunner:
    """Runs every observer on one worker thread, in arrival order, behind a bounded queue.

    Hand-off is batched: the loop appends jobs to a deque (no lock, no thread wake-up per chunk)
    and calls `flush()` once per poll round. While chunks flow, the worker looks for work every
    `BUSY_POLL_S` by itself and `flush()` wakes it only for a backlog of `WAKE_BATCH` jobs: a
    `queue.Queue` put with its `Condition.notify` per chunk cost 14 % of the loop thread at
    100 rigs, and a notify per poll round still 11 % (docs/benchmarks.md). After `IDLE_AFTER_S`
    without work the worker sleeps until notified. Cues go back through `cues`; the worker wakes
    the loop once per batch, or sooner when a cue has waited `CUE_WAKE_S`.
    """

    CUE_WAKE_S = 0.002
    BUSY_POLL_S = 0.001  # adds ≤ 1 ms to a cue; ~1000 wake-ups/s while sessions stream
    WAKE_BATCH = 64
    IDLE_AFTER_S = 1.0

    def __init__(
        self,
        observers: Sequence[SessionObserver],
        *,
        max_queue: int = DEFAULT_QUEUE_CHUNKS,
        wake: Callable[[], None] | None = None,
        inline: bool = False,
    ) -> None:
        self.observers = list(observers)
        # inline: every job runs at once on the caller's thread (the controller loop); no
        # queue, no thread, no hand-over (see ControllerConfig.observer_thread).
        self.inline = inline and bool(self.observers)
        # Unbounded append, bounded by has_room(): the loop never blocks (a drained batch may
        # add up to ControllerConfig.drain_batch jobs past the bound, no more).
        self._jobs: deque[_Job | None] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._idle: str | None = None  # "deep" | "light" (polling) | None (working)
        self._last_job = 0.0
        self._max_queue = max_queue
        self.cues: queue.SimpleQueue[tuple[str, Cue, float]] = queue.SimpleQueue()
        self._wake = wake
        self.errors = 0
        self.processed = 0
        # Where a cue's time goes (Controller.status): chunk arrival → the worker takes it, and
        # the observers' time for chunks that produced a cue.
        self.queue_wait: deque[float] = deque(maxlen=WAIT_KEEP)
        self.cue_compute: deque[float] = deque(maxlen=WAIT_KEEP)
        self._thread: threading.Thread | None = None
        if self.observers and not self.inline:
            self._thread = threading.Thread(target=self._run, name="observers", daemon=True)
            self._thread.start()

    def set_wake(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    @property
    def enabled(self) -> bool:
        return self._thread is not None or self.inline

    def has_room(self) -> bool:
        """False when the queue is full: the caller should pause reading data."""
        return self._thread is None or len(self._jobs) < self._max_queue

    def pending(self) -> int:
        """Jobs queued and not yet taken by the worker."""
        return len(self._jobs)

    def start(self, info: SessionInfo) -> None:
        if self.inline:
            self._do(_Job("start", info.session_id, info, time.monotonic()))
        elif self._thread is not None:
            self._jobs.append(_Job("start", info.session_id, info, time.monotonic()))
            self.flush(urgent=True)

    def chunk(self, session_id: str, chunk: SampleChunk, received_at: float) -> None:
        """Queue a chunk (never blocks); the caller calls `flush()` after its poll round."""
        if self.inline:  # the loop's per-chunk path: no job object unless a cue comes out
            taken = time.monotonic()
            self.queue_wait.append(taken - received_at)
            for obs in self.observers:
                try:
                    cues = obs.on_chunk(session_id, chunk)
                except Exception:
                    self.errors += 1
                    log.exception("observer %r failed on chunk", obs)
                    continue
                if cues:
                    for cue in cues:
                        self.cues.put((session_id, cue, received_at))
                    self.cue_compute.append(time.monotonic() - taken)
            self.processed += 1
        elif self._thread is not None:
            self._jobs.append(_Job("chunk", session_id, chunk, received_at))

    def end(self, session_id: str, final_state: str) -> None:
        if self.inline:
            self._do(_Job("end", session_id, final_state, time.monotonic()))
        elif self._thread is not None:
            self._jobs.append(_Job("end", session_id, final_state, time.monotonic()))
            self.flush(urgent=True)

    def flush(self, urgent: bool = False) -> None:
        """Wake the worker if it sleeps deeply, or polls but a backlog waits (or `urgent`)."""
        idle = self._idle
        if self._thread is None or not self._jobs or idle is None:
            return
        if idle == "deep" or urgent or len(self._jobs) >= self.WAKE_BATCH:
            with self._cond:
                if self._idle is not None:
                    self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue and stop the worker."""
        if self._thread is not None:
            self._jobs.append(None)
            self.flush(urgent=True)
            self._thread.join(timeout)
            self._thread = None

    def _next(self) -> _Job | None:
        jobs = self._jobs
        while True:
            try:
                job = jobs.popleft()
                self._last_job = time.monotonic()
                return job
            except IndexError:
                pass
            deep = time.monotonic() - self._last_job > self.IDLE_AFTER_S
            with self._cond:
                # Checked under the lock `flush()` takes: a job appended before the producer's
                # flush is either seen here or the flush finds us waiting and may notify.
                if not jobs:
                    self._idle = "deep" if deep else "light"
                    self._cond.wait(0.01 if deep else self.BUSY_POLL_S)
                    self._idle = None

    def _run(self) -> None:
        cue_since: float | None = None
        while True:
            if cue_since is not None and not self._jobs:
                self._signal_cues()
                cue_since = None
            job = self._next()
            if job is None:
                self._signal_cues()
                return
            if job.kind == "chunk":
                self.queue_wait.append(time.monotonic() - job.received_at)
            produced = self._do(job)
            if produced and cue_since is None:
                cue_since = time.monotonic()
            if cue_since is not None and (
                    not self._jobs or time.monotonic() - cue_since >= self.CUE_WAKE_S):
                self._signal_cues()
                cue_since = None

    def _do(self, job: _Job) -> bool:
        """Run one job through every observer; True if it produced cues."""
        produced = False
        taken = time.monotonic()
        for obs in self.observers:
            try:
                if job.kind == "chunk":
                    for cue in obs.on_chunk(job.session_id, job.payload):
                        self.cues.put((job.session_id, cue, job.received_at))
                        produced = True
                elif job.kind == "start":
                    obs.on_start(job.payload)
                else:
                    obs.on_end(job.session_id, job.payload)
            except Exception:
                self.errors += 1
                log.exception("observer %r failed on %s", obs, job.kind)
        self.processed += 1
        if produced:
            self.cue_compute.append(time.monotonic() - taken)
        return produced

    def _signal_cues(self) -> None:
        if self._wake is not None and not self.cues.empty():
            self._wake()
