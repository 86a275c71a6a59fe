"""Controller tunables in one place, with where each default comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab_controller import protocol as P
from lab_controller.settings import LabSettings

# ControllerConfig.gc_thresholds' default, also used by the scoring worker processes.
DEFAULT_GC_THRESHOLDS = (10_000, 50, 100)


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Everything the controller process needs besides its sink and observers."""

    control_endpoint: str = "tcp://127.0.0.1:5555"
    data_endpoint: str = "tcp://127.0.0.1:5556"
    api_endpoint: str = "tcp://127.0.0.1:5557"
    # Data socket pattern (docs/protocol.md): rigs PUSH, the controller PULLs (fair-queued,
    # blocking at the HWM, never dropping); "router" accepts DEALER rigs on the same endpoint.
    data_socket: Literal["pull", "router"] = "pull"
    site_id: str = "site-01"
    # Application heartbeats (architecture.md: ~1 s, dead after 3 missed).
    heartbeat_interval_s: float = P.DEFAULT_HEARTBEAT_INTERVAL_S
    heartbeat_liveness: int = P.HEARTBEAT_MISSES_DEAD
    # ZMTP heartbeats catch a frozen peer / half-open TCP (performance.md "Lessons").
    zmtp_heartbeat_ivl_ms: int = P.ZMTP_HEARTBEAT_IVL_MS
    zmtp_heartbeat_timeout_ms: int = P.ZMTP_HEARTBEAT_TIMEOUT_MS
    # An interrupted session resumes if its rig returns within this grace period.
    interrupted_grace_s: float = 30.0
    # A rig that re-registers without listing a session of ours gets this long to send that
    # session's END_OF_STREAM (rigs re-send it every 2 s, protocol §11) before the session is
    # failed as lost with the rig's restart.
    lost_session_wait_s: float = 5.0
    # Ended sessions kept in memory for the API (older ones are forgotten; their events and
    # data are in the sink / telemetry): 5000 ≈ a week of a 40-rig lab's sessions.
    keep_ended_sessions: int = 5000
    # A command (START/STOP/ABORT) not acknowledged within this is failed with reason timeout.
    command_timeout_s: float = 5.0
    # Clock probes: a burst at registration (so a class launch soon after finds the offset
    # known), then one probe per interval; the estimate keeps the best of the last 8 (LSL).
    timesync_interval_s: float = 2.0
    timesync_burst: int = 4
    timesync_burst_spacing_s: float = 0.05
    # DATA_ACKs per session at most this often (protocol §10: acks are cumulative, ≤ 1 per
    # session per ACK_COALESCE_S = 50 ms, so one follows durability within ~100 ms). Every ack is
    # parsed in Python at both ends (~25 µs together): at 200 rigs an ack per 20 ms chunk cost
    # ~0.25 cores of a 2-core machine; 50 ms keeps it at ≤ 4k acks/s.
    ack_min_interval_s: float = P.ACK_COALESCE_S
    # Flow-control window announced in WELCOME (protocol defaults, justified there).
    max_inflight_chunks: int = P.DEFAULT_MAX_INFLIGHT_CHUNKS
    max_inflight_bytes: int = P.DEFAULT_MAX_INFLIGHT_BYTES
    # Receive HWM of the data socket in messages: 1000 is ZeroMQ's default; the rigs' windows
    # bound what is in flight anyway, the HWM only bounds what waits while we pause reading.
    data_rcvhwm: int = 1000
    # Messages drained per socket per poll round, so no socket starves the others.
    drain_batch: int = 256
    # ... and for the data socket: a round's chunks are scored before the next poll, so a
    # smaller batch lets the cues of a backlog's first chunks out sooner. Measured at 150-200
    # rigs: the controller's part of the cue latency p99 8-15 ms at 32-64 against 25-42 ms at
    # 256, the loop's CPU unchanged (docs/benchmarks.md).
    data_drain_batch: int = 64
    # sys.setswitchinterval() for the controller's process (None: leave it). The loop, the
    # observer (scoring) thread and the telemetry writer share one GIL; at CPython's default
    # 5 ms, a scorer waiting behind the loop adds up to 5 ms per hand-over to a cue's latency
    # (chunk → scorer → loop: two hand-overs). 1 ms trades a few more thread switches for it.
    gil_switch_interval_s: float | None = 0.001
    # Where observers (scoring, ...) run. False: on the controller loop, right after each poll
    # round's chunks are admitted, so a cue leaves in the same round (scoring costs ~6 µs per
    # 20 ms chunk). True: on their own thread behind a bounded queue, for observers too slow
    # for the loop. The thread shares the GIL with the loop: measured at 150-200 rigs, chunks
    # waited 50-100 ms (p99) for it, as every GIL release (a ZeroMQ recv, a numba call) hands
    # the GIL over for up to a switch interval.
    observer_thread: bool = False
    # gc.freeze() when the loop starts: CPython's full (gen-2) collection walks every tracked
    # object and stops all threads meanwhile; with the kernels, pydantic models and psycopg
    # loaded that is ~150k objects and ~60 ms, the p99 of a cue's latency. Frozen objects are
    # never walked again; what is created later is still collected.
    gc_freeze: bool = True
    # gc.set_threshold() for the controller's process (None: CPython's 700, 10, 10). At 700 the
    # young generation is collected ~14 times a second at 150 rigs (chunks queued for the
    # writer keep ~10k container objects alive for a commit's time), with a gen-1 and now and
    # then a gen-2 pass: 0.4-0.5 s of stopped threads per 15 s, single pauses 11-18 ms. At
    # 10 000, 50, 100 the same runs had 0-1 collections per 15 s (bench_capacity
    # --gc-threshold, A/B at 150 rigs, docs/benchmarks.md); cyclic garbage waits longer.
    gc_thresholds: tuple[int, int, int] | None = DEFAULT_GC_THRESHOLDS
    # SCHED_RR priority (1-99) for the loop thread and ZeroMQ's background threads (I/O,
    # reaper); None: normal
    # scheduling. On a machine shared with other busy processes (the simulated rigs, the
    # database) a runnable loop can wait a scheduler slice (several ms) for a core; a real-time
    # thread preempts them when a chunk arrives. Needs CAP_SYS_NICE (root or RLIMIT_RTPRIO):
    # without it the controller logs a warning and runs normally. Linux caps real-time threads
    # at 95 % of each core (kernel.sched_rt_runtime_us), so a runaway loop cannot lock up a core.
    realtime_priority: int | None = None
    # Poll timeout when idle; the loop wakes earlier for sockets, the sink and the observers.
    tick_s: float = 0.05
    # Security: CurveZMQ when a secret key is configured; plain only on loopback by default.
    curve_secret_key_file: Path | None = None
    curve_allowed_keys_dir: Path | None = None
    allow_plain_remote: bool = False
    controller_id: str | None = None  # default: a fresh UUID per process
    extra_endpoints: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dead_after_s(self) -> float:
        return self.heartbeat_interval_s * self.heartbeat_liveness

    @classmethod
    def from_settings(cls, settings: LabSettings, **overrides: object) -> ControllerConfig:
        """Config from the lab settings (`LabSettings.controller`), with keyword overrides."""
        c = settings.controller
        values: dict[str, object] = {
            "control_endpoint": c.control_endpoint,
            "data_endpoint": c.data_endpoint,
            "api_endpoint": c.api_endpoint,
            "site_id": settings.site_id,
            "heartbeat_interval_s": c.heartbeat_interval_s,
            "heartbeat_liveness": c.heartbeat_liveness,
            "interrupted_grace_s": c.interrupted_grace_s,
            "allow_plain_remote": c.allow_plain_remote,
            "curve_secret_key_file": c.curve_secret_key_file,
            "curve_allowed_keys_dir": c.curve_allowed_keys_dir,
            "realtime_priority": c.realtime_priority,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
