"""The controller engine: one loop thread that owns the sockets and all controller state.

Everything that changes state — rig registry, sessions, sequence bookkeeping, pending commands —
runs on this one thread, so there are no locks around it. Two helpers run beside it and talk to
it through thread-safe queues and a wake-up pipe: the durable sink's writer (group commit) and the
observer runner (scoring, telemetry). See docs/controller.md for the behaviour in prose.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lab_controller import protocol as P
from lab_controller.controller.badinput import BadInputCounter
from lab_controller.controller.config import ControllerConfig
from lab_controller.controller.launch import HealthCheck, health_check
from lab_controller.controller.observers import ObserverRunner, SessionInfo, SessionObserver
from lab_controller.controller.registry import RigRecord, RigRegistry
from lab_controller.controller.security import ServerSecurity
from lab_controller.controller.sequence import SessionSequence
from lab_controller.controller.sessions import (
    EventSink,
    IllegalTransition,
    Session,
    SessionState,
    SessionTable,
)
from lab_controller.controller.sinks import DurableSink, SinkBusy, session_key
from lab_controller.controller.transport import ControllerSockets, Incoming, make_thread_realtime

log = logging.getLogger(__name__)

_MASK_BIT = int(P.ChunkFlags.MASK)  # plain int: `int & IntFlag` runs Python enum code
S = SessionState
_NOT_RUNNING_YET = (S.ASSIGNED, S.ARMED)  # the first samples move these to running

# Keep the last 10k cue latencies for p50/p99 (≈ a minute of cues from a full class).
CUE_LATENCY_KEEP = 10_000
# Clock probes unanswered after this long are forgotten (a rig that died mid-probe).
PROBE_EXPIRY_S = 10.0


@dataclass(slots=True)
class CommandOutcome:
    """How a command ended: acked, nacked (code), timed out, or failed fast (dead/busy)."""

    ok: bool
    code: str = ""
    reason: str = ""
    rig_time: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0  # monotonic time the outcome was known


@dataclass(slots=True)
class PendingCommand:
    command_id: str
    rig_id: str
    session_id: str
    kind: str  # start | stop | abort
    sent_at: float
    deadline: float
    on_done: Callable[[CommandOutcome], None]


@dataclass(slots=True)
class _Eos:
    last_seq: int
    reason: P.EndReason


@dataclass(slots=True)
class _SessionExtra:
    """Controller-side facts about a session beyond the state machine."""

    params: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    clock_offset_s: float | None = None  # offset in force when the session started
    eos: _Eos | None = None
    adopted: bool = False
    ended_notified: bool = False
    unlisted_at: float | None = None  # monotonic: the rig re-registered without this session


@dataclass(slots=True)
class _Route:
    """What the general data path looks up per chunk, cached for a session (`_routes`)."""

    handle: int
    sid: str
    session: Session
    seqs: SessionSequence
    extra: _SessionExtra
    rec: RigRecord
    layout: P.ChannelLayout


class Controller:
    """Lab controller: call `start()` (background thread) or `run()` (this thread)."""

    def __init__(
        self,
        cfg: ControllerConfig,
        sink: DurableSink,
        *,
        observers: Sequence[SessionObserver] = (),
        event_sink: EventSink | None = None,
        security: ServerSecurity | None = None,
        scene_for: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.cfg = cfg
        # Exercise id -> the scene a rig needs (START.scene) when the request carries none,
        # e.g. `lab_controller.exercises.scene_for`; None: requests bring their own.
        self.scene_for = scene_for
        self.controller_id = cfg.controller_id or str(uuid.uuid4())
        self.sink = sink
        self.security = security
        self.sessions = SessionTable(event_sink)
        self.registry = RigRegistry(cfg.heartbeat_interval_s, cfg.heartbeat_liveness)
        self.bad = BadInputCounter()
        self.seq: dict[str, SessionSequence] = {}
        self.extra: dict[str, _SessionExtra] = {}
        self.runner = ObserverRunner(observers, inline=not self.cfg.observer_thread)
        self.endpoints: dict[str, str] = {}
        self.started_wall = time.time()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sockets: ControllerSockets | None = None
        self._commands: dict[str, PendingCommand] = {}
        self._held: deque[P.SampleChunk] = deque()
        self._acked: dict[str, int] = {}
        self._acked_at: dict[str, float] = {}
        self._probes: dict[int, tuple[str, float, float]] = {}  # id -> (rig, t0 wall, mono)
        self._next_probe_id = 1
        self._probe_due: dict[str, list[float]] = {}  # rig -> monotonic times of due probes
        self._housekeeping_s = min(0.05, cfg.heartbeat_interval_s / 10)
        self._beat_slice = 0
        self._next_housekeeping = 0.0
        self._next_prune = 0.0
        self._last_round = 0.0
        self._liveness_hold_until = 0.0
        self._control_backlog = False
        self.liveness_holds = 0
        self._cue_latency: deque[float] = deque(maxlen=CUE_LATENCY_KEEP)
        # poll round durations (poll + handling + housekeeping) and chunks per round
        self._round_times: deque[float] = deque(maxlen=CUE_LATENCY_KEEP)
        self._data_per_round: deque[int] = deque(maxlen=CUE_LATENCY_KEEP)
        self.cues_sent = 0
        self.dead_detections: deque[dict[str, Any]] = deque(maxlen=100)
        self.loop_errors = 0
        self.held_events = 0
        self.realtime = False  # the loop runs SCHED_RR (cfg.realtime_priority, if permitted)
        self.fast_path_chunks = 0  # chunks `_on_data_fast` took (the rest went to `_on_data`)
        self._sid_cache: dict[bytes, str] = {}
        # Session raw id -> _Route of a session whose last chunk took the general path without
        # anything unusual; the next contiguous plain chunk of it takes `_on_data_batch`'s fast
        # path. Cleared whenever the maps it caches change (registration, new session, prune).
        self._routes: dict[bytes, _Route] = {}
        self._ack_due = False

    # ─────────────────────────────────────────────────────────────────── lifecycle

    def start(self, timeout: float = 10.0) -> dict[str, str]:
        """Run the loop in a background thread; return the bound endpoints once listening."""
        self._thread = threading.Thread(target=self.run, kwargs={"reraise": False},
                                        name="controller", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("controller did not start")
        if self._start_error is not None:
            raise self._start_error
        return self.endpoints

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and drain the observers. The sink belongs to the caller: close it after."""
        self._stop.set()
        if self._sockets is not None:
            self._sockets.waker.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self, reraise: bool = True) -> None:
        """The loop (blocks until `stop()`); sockets live and die on this thread."""
        prio = self.cfg.realtime_priority
        self.realtime = prio is not None and make_thread_realtime(prio)
        try:
            self._sockets = ControllerSockets(self.cfg, self.security,
                                              prio if self.realtime else None)
        except Exception as exc:
            self._start_error = exc
            self._ready.set()
            if reraise:
                raise
            return
        self.endpoints = dict(self._sockets.endpoints)
        if self.cfg.gil_switch_interval_s is not None:
            sys.setswitchinterval(self.cfg.gil_switch_interval_s)
        if self.cfg.gc_thresholds is not None:
            gc.set_threshold(*self.cfg.gc_thresholds)
        if self.cfg.gc_freeze:
            gc.collect()
            gc.freeze()
        wake = self._sockets.waker.wake
        self.runner.set_wake(wake)
        setter = getattr(self.sink, "set_listener", None)
        if callable(setter):
            setter(wake)
        self._ready.set()
        log.info("controller %s listening: %s", self.controller_id, self.endpoints)
        try:
            while not self._stop.is_set():
                self._loop_once()
        finally:
            self.runner.close()
            self._sockets.close()
            self._sockets = None

    @property
    def sockets(self) -> ControllerSockets:
        assert self._sockets is not None  # only called on the loop thread after binding
        return self._sockets

    def _loop_once(self) -> None:
        read_data = not self._held and self.runner.has_room()
        timeout = self.cfg.tick_s if read_data else min(self.cfg.tick_s, 0.005)
        polled = time.monotonic()
        try:
            incoming = self.sockets.poll(timeout, read_data)
        except Exception:
            self.loop_errors += 1
            log.exception("poll failed")
            time.sleep(0.01)
            return
        control_msgs = sum(1 for inc in incoming if inc.source == "control")
        # A full drain batch means heartbeats may still be queued behind it: judge nobody dead
        # until the control socket is read to the end.
        self._control_backlog = control_msgs >= self.cfg.drain_batch
        data: list[Incoming] = []
        for inc in incoming:
            if inc.source == "wake":
                self._ack_due = True
                continue
            if inc.source == "data":
                data.append(inc)  # drained last: handled below as one batch
                continue
            try:
                if inc.source == "control":
                    self._on_control(inc)
                elif inc.source == "api":
                    self._on_api(inc)
            except Exception as exc:  # never let one message take the controller down
                self._internal_error(exc, inc.source)
        if data:
            self._on_data_batch(data)
        self.runner.flush()  # one wake-up of the observer thread per poll round, not per chunk
        try:
            self._after_io()
        except Exception:
            self.loop_errors += 1
            log.exception("housekeeping failed")
        done = time.monotonic()
        self._round_times.append(done - polled)
        self._data_per_round.append(len(data))

    def _after_io(self) -> None:
        if self._held:
            self._retry_held()
        now = time.monotonic()
        if self._last_round and now - self._last_round > self.cfg.heartbeat_interval_s:
            # The controller itself was starved of CPU for more than a heartbeat: a rig's
            # silence is then our own stall, so give every rig one more interval to be heard.
            self._liveness_hold_until = now + self.cfg.heartbeat_interval_s
            self.liveness_holds += 1
            log.warning("controller loop stalled %.2f s; dead-rig detection held for %.1f s",
                        now - self._last_round, self.cfg.heartbeat_interval_s)
        self._last_round = now
        # Acks when the sink said something became durable, else once per housekeeping round
        # (sinks without a listener); walking every session per poll round would cost CPU.
        if self._ack_due or now >= self._next_housekeeping:
            self._ack_due = False
            self._send_acks()
        self._send_cues()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + self._housekeeping_s
            self._expire_rigs()
            self._expire_commands(now)
            self._expire_grace()
            self._expire_unlisted(now)
            self._send_probes(now)
            self._send_heartbeats()
            if now >= self._next_prune:
                self._next_prune = now + 10.0
                self._prune()

    # ─────────────────────────────────────────────────────────────────── sending helpers

    def _send_rig(self, rec: RigRecord, msg: P.ControllerToRig) -> bool:
        if not rec.alive:
            return False
        return self.sockets.send_control(rec.identity, P.encode_control(msg))

    def _send_error(self, identity: bytes, kind: P.ErrorKind, detail: str, ref_type: str = "",
                    command_id: str | None = None) -> None:
        msg = P.Error(code=kind, detail=detail[:4000], ref_type=ref_type[:256],
                      command_id=command_id)
        self.sockets.send_control(identity, P.encode_control(msg))

    # ─────────────────────────────────────────────────────────────────── control link

    def _on_control(self, inc: Incoming) -> None:
        identity = inc.envelope[0] if inc.envelope else b""
        if inc.truncated:
            self.bad.record("malformed", "too many frames", peer=identity.hex())
            self._send_error(identity, P.ErrorKind.MALFORMED, "a message has 2 frames")
            return
        try:
            msg = P.decode_control(inc.frames)
        except P.ProtocolError as exc:
            ref = P.peek_type(inc.frames[1]) if len(inc.frames) == 2 else ""
            self.bad.record(exc.kind.value, exc.detail, peer=identity.hex())
            self._send_error(identity, exc.kind, exc.detail, ref)
            return
        if isinstance(msg, P.Hello):
            self._on_hello(identity, msg, inc.user_id)
            return
        rec = self.registry.by_identity(identity)
        if rec is None:
            self.bad.record("unknown_rig", f"{msg.type} before HELLO", peer=identity.hex())
            self._send_error(identity, P.ErrorKind.UNKNOWN_RIG,
                             "not registered (controller restarted?): send HELLO", msg.type,
                             getattr(msg, "command_id", None))
            return
        self.registry.touch(rec)
        if isinstance(msg, P.Heartbeat):
            self._on_heartbeat(rec, msg)
        elif isinstance(msg, P.Ack | P.Nack):
            self._on_command_reply(rec, msg)
        elif isinstance(msg, P.TimeSyncReply):
            self._on_time_sync_reply(rec, msg)
        elif isinstance(msg, P.Status):
            self._on_status(rec, msg)
        elif isinstance(msg, P.EndOfStream):
            self._on_end_of_stream(rec, msg)
        elif isinstance(msg, P.Error):
            self.bad.record("peer_error", f"{msg.code}: {msg.detail}", peer=rec.rig_id)
            if msg.command_id and msg.command_id in self._commands:
                self._finish_command(msg.command_id, CommandOutcome(
                    False, msg.code.value, msg.detail, at=time.monotonic()))
        else:
            self.bad.record("unexpected_type", msg.type, peer=rec.rig_id)
            self._send_error(identity, P.ErrorKind.UNKNOWN_TYPE,
                             f"{msg.type} is not sent by rigs", msg.type)

    def _on_hello(self, identity: bytes, hello: P.Hello, user_id: str | None) -> None:
        if self.security is not None and user_id != hello.rig_id:
            self.bad.record("not_allowed", f"key of {user_id!r} used for {hello.rig_id!r}")
            self._reject(identity, P.NackCode.NOT_ALLOWED,
                         f"this key belongs to {user_id!r}, not {hello.rig_id!r}")
            return
        try:
            layout = P.layout_from_hello(hello)
        except P.ProtocolError as exc:
            self.bad.record(exc.kind.value, exc.detail, peer=hello.rig_id)
            self._reject(identity, P.NackCode.UNSUPPORTED, exc.detail)
            return
        old = self.registry.get(hello.rig_id)
        if old is not None and old.alive and old.identity != identity:
            log.info("rig %s re-registered on a new connection; the old one is forgotten",
                     hello.rig_id)
        rec, known = self.registry.register(hello, layout, identity, time.time())
        self._routes.clear()
        resume: list[P.ResumeEntry] = []
        active_ok = True
        durable = self.sink.durable()
        session_ids: list[str] = []
        if hello.active_session is not None:
            session_ids.append(hello.active_session.session_id)
        session_ids += [b.session_id for b in hello.backlog if b.session_id not in session_ids]
        for sid in session_ids:
            session = self.sessions.get(sid)
            active = hello.active_session if (
                hello.active_session and hello.active_session.session_id == sid) else None
            if session is None:
                session = self._adopt(rec, sid, active)
            elif session.rig_id != rec.rig_id:
                self.bad.record("wrong_rig", f"session {sid} belongs to {session.rig_id}",
                                peer=rec.rig_id)
                resume.append(P.ResumeEntry(session_id=sid, durable_seq=-1, resume=False))
                continue
            elif session.state is S.INTERRUPTED:
                back = session.resume_state or S.RUNNING
                if active is not None and active.state is P.RigState.STOPPING:
                    back = S.STOPPING
                self.sessions.move(session, back, "rig reconnected within the grace period")
            if active is not None and not session.active:
                active_ok = False  # we ended it (aborted/failed): the rig stops and flushes
            resume.append(P.ResumeEntry(session_id=sid, durable_seq=durable.get(sid, -1)))
        now_m = time.monotonic()
        for other in self.sessions.active_of_rig(rec.rig_id):
            if other.session_id not in session_ids and other.state is not S.ASSIGNED:
                # Not listed: either the rig restarted without its store (the session cannot
                # complete) or everything was acknowledged and only its END_OF_STREAM is still
                # to come (re-sent every 2 s). `_expire_unlisted` decides after a wait.
                ex = self.extra[other.session_id]
                if ex.unlisted_at is None:
                    ex.unlisted_at = now_m
        welcome = P.Welcome(
            rig_id=rec.rig_id,
            rig_handle=rec.handle,
            controller_id=self.controller_id,
            server_time=time.time(),
            heartbeat_interval_s=self.cfg.heartbeat_interval_s,
            max_inflight_chunks=self.cfg.max_inflight_chunks,
            max_inflight_bytes=self.cfg.max_inflight_bytes,
            data_endpoint=self.endpoints.get("data"),
            resume=resume,
            active_session_ok=active_ok,
        )
        self.sockets.send_control(identity, P.encode_control(welcome))
        for entry in resume:
            self._acked[entry.session_id] = entry.durable_seq
        now = time.monotonic()
        self._probe_due[rec.rig_id] = [
            now + i * self.cfg.timesync_burst_spacing_s for i in range(self.cfg.timesync_burst)
        ]
        log.info("rig %s %s (handle %d, %d trackers, %s sessions to resume)", rec.rig_id,
                 "re-registered" if known else "registered", rec.handle,
                 len(hello.trackers), len(resume))

    def _reject(self, identity: bytes, code: P.NackCode, reason: str) -> None:
        msg = P.Reject(code=code, reason=reason[:4000])
        self.sockets.send_control(identity, P.encode_control(msg))

    def _adopt(self, rec: RigRecord, sid: str, active: P.ActiveSession | None) -> Session:
        """A session this controller does not know (it restarted): take it over from the rig."""
        session = Session(
            session_id=sid, rig_id=rec.rig_id,
            exercise=active.exercise_id if active else "",
            trainee="",
        )
        self.sessions.create(session, "adopted from the rig after a controller restart")
        self._new_session_state(session, adopted=True)
        target = S.STOPPING
        if active is not None and active.state is P.RigState.RUNNING:
            target = S.RUNNING
        self.sessions.move(session, target, "adopted")
        self.runner.start(self._session_info(session, rec, resumed=True))
        return session

    def _new_session_state(self, session: Session, adopted: bool = False,
                           params: dict[str, Any] | None = None,
                           duration_s: float | None = None) -> None:
        sid = session.session_id
        self._routes.clear()  # a session id may come back (adopted again after a prune)
        seqs = SessionSequence()
        d = self.sink.durable().get(sid, -1)
        if d >= 0:
            seqs.received.add(0, d + 1)  # stored before a restart: resends are duplicates
            seqs.durable_upto = d
        self.seq[sid] = seqs
        self.extra[sid] = _SessionExtra(params=dict(params or {}), duration_s=duration_s,
                                        adopted=adopted)

    def _on_heartbeat(self, rec: RigRecord, hb: P.Heartbeat) -> None:
        if hb.state is not None:
            rec.state = hb.state
        rec.session_id = hb.session_id
        rec.next_seq = hb.next_seq
        rec.backlog_chunks = hb.backlog_chunks
        rec.backlog_bytes = hb.backlog_bytes
        if hb.trackers_valid is not None:
            rec.note_trackers(time.monotonic(), list(hb.trackers_valid))
        rec.last_heartbeat_wall = time.time()
        if hb.session_id:
            ex = self.extra.get(hb.session_id)
            if ex is not None:
                ex.unlisted_at = None
        if hb.state is P.RigState.RUNNING and hb.session_id:
            self._mark_running(hb.session_id, rec, "rig reports running")

    def _on_status(self, rec: RigRecord, st: P.Status) -> None:
        rec.state = st.state
        rec.session_id = st.session_id
        rec.next_seq = st.next_seq
        rec.backlog_chunks = st.backlog_chunks
        rec.backlog_bytes = st.backlog_bytes
        if st.state is P.RigState.RUNNING and st.session_id:
            self._mark_running(st.session_id, rec, "rig reports running")

    def _mark_running(self, sid: str, rec: RigRecord, reason: str) -> None:
        session = self.sessions.get(sid)
        if session is None or session.rig_id != rec.rig_id:
            return
        if session.state in (S.ASSIGNED, S.ARMED):
            self.sessions.move(session, S.RUNNING, reason)
            ex = self.extra.get(sid)
            if ex is not None and ex.started_at is None:
                ex.started_at = time.time()

    # ─────────────────────────────────────────────────────────────────── commands

    def _send_command(self, rec: RigRecord, msg: P.Start | P.Stop | P.Abort,
                      on_done: Callable[[CommandOutcome], None]) -> None:
        now = time.monotonic()
        if not rec.alive:
            on_done(CommandOutcome(False, P.NackCode.DEAD.value,
                                   f"rig {rec.rig_id} is not alive", at=now))
            return
        self._commands[msg.command_id] = PendingCommand(
            msg.command_id, rec.rig_id, msg.session_id, msg.type, now,
            now + self.cfg.command_timeout_s, on_done)
        if not self._send_rig(rec, msg):
            self._finish_command(msg.command_id, CommandOutcome(
                False, P.NackCode.DEAD.value, f"rig {rec.rig_id} is unreachable", at=now))

    def _finish_command(self, command_id: str, outcome: CommandOutcome) -> None:
        cmd = self._commands.pop(command_id, None)
        if cmd is None:
            return
        try:
            cmd.on_done(outcome)
        except Exception:
            self.loop_errors += 1
            log.exception("command completion for %s failed", cmd.kind)

    def _on_command_reply(self, rec: RigRecord, msg: P.Ack | P.Nack) -> None:
        cmd = self._commands.get(msg.command_id)
        if cmd is None:
            return  # late answer to a timed-out command, or a repeat: nothing waits for it
        if cmd.rig_id != rec.rig_id:
            self.bad.record("wrong_rig", f"answer to {cmd.kind} of {cmd.rig_id}", peer=rec.rig_id)
            return
        now = time.monotonic()
        if isinstance(msg, P.Ack):
            outcome = CommandOutcome(True, rig_time=msg.rig_time, detail=dict(msg.detail), at=now)
        else:
            outcome = CommandOutcome(False, msg.code.value, msg.reason, at=now)
        self._finish_command(msg.command_id, outcome)

    def _expire_commands(self, now: float) -> None:
        for cid, cmd in list(self._commands.items()):
            if now >= cmd.deadline:
                self._finish_command(cid, CommandOutcome(
                    False, P.NackCode.TIMEOUT.value,
                    f"{cmd.kind} not answered by {cmd.rig_id} within "
                    f"{self.cfg.command_timeout_s:g} s", at=now))

    # ─────────────────────────────────────────────────────────────────── sessions

    def busy_reason(self, rec: RigRecord) -> str | None:
        """Why `rec` cannot start a session now (None when it can)."""
        if not rec.alive:
            return "dead"
        s = self.sessions.active_for_rig(rec.rig_id)
        if s is not None:
            return f"busy with session {s.session_id} ({s.state.value})"
        if rec.state is not P.RigState.IDLE:
            return f"busy (rig reports {rec.state.value})"
        return None

    def start_session(
        self,
        rig_id: str,
        exercise_id: str,
        trainee: str,
        *,
        rubric_version: str = "",
        duration_s: float | None = None,
        params: dict[str, Any] | None = None,
        class_id: str | None = None,
        on_done: Callable[[Session, CommandOutcome], None],
    ) -> Session | None:
        """Create a session and send START (loop thread only). Fails fast for dead/busy rigs."""
        now = time.monotonic()
        rec = self.registry.get(rig_id)
        if rec is None:
            on_done_none = CommandOutcome(False, "not_found", f"unknown rig {rig_id}", at=now)
            on_done(_phantom(rig_id), on_done_none)
            return None
        busy = self.busy_reason(rec)
        if busy is not None:
            code = P.NackCode.DEAD.value if busy == "dead" else P.NackCode.BUSY.value
            reason = f"rig {rig_id} is not alive" if busy == "dead" else f"rig {rig_id} is {busy}"
            on_done(_phantom(rig_id), CommandOutcome(False, code, reason, at=now))
            return None
        params = dict(params or {})
        scene = params.pop("scene", None)
        if scene is None and self.scene_for is not None:
            try:
                scene = self.scene_for(exercise_id)
            except Exception as exc:  # unknown exercise, unreadable library entry
                on_done(_phantom(rig_id), CommandOutcome(
                    False, P.NackCode.INVALID_SCENE.value,
                    f"no scene for exercise {exercise_id!r}: {exc}", at=now))
                return None
        session = Session(session_id=str(uuid.uuid4()), rig_id=rig_id, exercise=exercise_id,
                          trainee=trainee, rubric_version=rubric_version, class_id=class_id)
        self.sessions.create(session, "assigned")
        self._new_session_state(session, params=params, duration_s=duration_s)
        ex = self.extra[session.session_id]
        ex.clock_offset_s = rec.clock.offset
        self.runner.start(self._session_info(session, rec))
        msg = P.Start(
            command_id=str(uuid.uuid4()), session_id=session.session_id,
            exercise_id=exercise_id, trainee=trainee, rubric_version=rubric_version,
            duration_s=duration_s, params=params, scene=dict(scene or {}),
        )

        def done(outcome: CommandOutcome) -> None:
            if outcome.ok:
                if session.state is S.ASSIGNED:
                    self.sessions.move(session, S.ARMED, "rig accepted START")
            elif session.state in (S.ASSIGNED, S.INTERRUPTED):
                self.sessions.move(session, S.FAILED, f"START {outcome.code}: {outcome.reason}")
                self._session_ended(session)
            on_done(session, outcome)

        self._send_command(rec, msg, done)
        return session

    def stop_session(self, sid: str, reason: str, abort: bool,
                     on_done: Callable[[Session | None, CommandOutcome], None]) -> None:
        """STOP (normal end) or ABORT a session (loop thread only)."""
        now = time.monotonic()
        session = self.sessions.get(sid)
        if session is None:
            on_done(None, CommandOutcome(False, "unknown_session", f"unknown session {sid}",
                                         at=now))
            return
        if not session.active:
            if abort or session.state is S.FINISHED:
                on_done(session, CommandOutcome(True, reason="already ended", at=now))
            else:
                on_done(session, CommandOutcome(False, "bad_state",
                                                f"session already {session.state.value}", at=now))
            return
        rec = self.registry.get(session.rig_id)
        rig_gone = rec is None or not rec.alive or session.state is S.INTERRUPTED
        if rig_gone:
            if abort:
                self.sessions.move(session, S.ABORTED, reason or "aborted while rig unreachable")
                self._session_ended(session)
                on_done(session, CommandOutcome(True, reason="rig unreachable; aborted here",
                                                at=now))
            else:
                on_done(session, CommandOutcome(False, P.NackCode.DEAD.value,
                                                f"rig {session.rig_id} is not alive; use abort",
                                                at=now))
            return
        assert rec is not None
        cls = P.Abort if abort else P.Stop
        msg = cls(command_id=str(uuid.uuid4()), session_id=sid, reason=reason)

        def done(outcome: CommandOutcome) -> None:
            if abort:
                if session.active:
                    why = reason or "aborted by instructor"
                    if not outcome.ok:
                        why += f" (rig did not confirm: {outcome.code})"
                    self.sessions.move(session, S.ABORTED, why)
                    self._session_ended(session)
                on_done(session, CommandOutcome(True, outcome.code, outcome.reason,
                                                outcome.rig_time, at=outcome.at))
                return
            if outcome.ok and session.state in (S.ASSIGNED, S.ARMED, S.RUNNING):
                self.sessions.move(session, S.STOPPING, reason or "stopped by instructor")
                self._check_eos(session)
            on_done(session, outcome)

        self._send_command(rec, msg, done)

    def _session_ended(self, session: Session) -> None:
        ex = self.extra.get(session.session_id)
        if ex is not None:
            if ex.ended_at is None:
                ex.ended_at = time.time()
            if ex.ended_notified:
                return
            ex.ended_notified = True
        self.runner.end(session.session_id, session.state.value)

    def _on_end_of_stream(self, rec: RigRecord, eos: P.EndOfStream) -> None:
        session = self.sessions.get(eos.session_id)
        if session is None or session.rig_id != rec.rig_id:
            kind = "unknown_session" if session is None else "wrong_rig"
            self.bad.record(kind, f"end_of_stream for {eos.session_id}", peer=rec.rig_id)
            self._send_error(rec.identity, P.ErrorKind(kind), f"session {eos.session_id}",
                             eos.type)
            return
        ex = self.extra[session.session_id]
        ex.eos = _Eos(eos.last_seq, eos.reason)
        ex.unlisted_at = None
        if session.state in (S.ASSIGNED, S.ARMED, S.RUNNING, S.INTERRUPTED):
            self.sessions.try_move(session, S.STOPPING, f"end of stream ({eos.reason.value})")
        self._check_eos(session)

    def _check_eos(self, session: Session) -> None:
        """Finish a session whose END_OF_STREAM is in and whose samples are all durable."""
        ex = self.extra.get(session.session_id)
        if ex is None or ex.eos is None:
            return
        sid = session.session_id
        durable = self.seq[sid].durable_upto
        if durable < ex.eos.last_seq:
            return
        rec = self.registry.get(session.rig_id)
        if rec is not None:
            if self._acked.get(sid, -1) != durable and rec.alive:  # final DATA_ACK first
                self.sockets.send_control(rec.identity, self._data_ack(sid))
                self._acked[sid] = durable
            self._send_rig(rec, P.EndOfStreamAck(session_id=sid, durable_seq=ex.eos.last_seq))
        if session.active:
            final = {
                P.EndReason.STOPPED: S.FINISHED,
                P.EndReason.FINISHED: S.FINISHED,
                P.EndReason.ABORTED: S.ABORTED,
                P.EndReason.ERROR: S.FAILED,
            }[ex.eos.reason]
            if session.state is S.INTERRUPTED:
                self.sessions.move(session, S.STOPPING, "rig reconnected")
            self.sessions.move(session, final,
                               f"all {ex.eos.last_seq + 1} samples durable ({ex.eos.reason.value})")
        self._session_ended(session)

    def _session_info(self, session: Session, rec: RigRecord, resumed: bool = False
                      ) -> SessionInfo:
        ex = self.extra.get(session.session_id)
        return SessionInfo(
            session_id=session.session_id, rig_id=rec.rig_id, exercise_id=session.exercise,
            trainee=session.trainee, rubric_version=session.rubric_version,
            trackers=rec.layout.trackers, roles=rec.layout.roles, analog=rec.layout.analog,
            rate_hz=rec.hello.rate_hz, clock_offset_s=rec.clock.offset, resumed=resumed,
            params=dict(ex.params) if ex else {}, class_id=session.class_id,
            duration_s=ex.duration_s if ex else None,
        )

    # ─────────────────────────────────────────────────────────────────── liveness

    def _expire_rigs(self) -> None:
        if self._control_backlog or time.monotonic() < self._liveness_hold_until:
            return
        for rec in self.registry.expire():
            silent = time.monotonic() - rec.last_seen
            self.dead_detections.append({"rig_id": rec.rig_id, "silent_s": round(silent, 3),
                                         "at": time.time()})
            log.warning("rig %s dead: silent for %.2f s", rec.rig_id, silent)
            for cid, cmd in list(self._commands.items()):
                if cmd.rig_id == rec.rig_id:
                    self._finish_command(cid, CommandOutcome(
                        False, P.NackCode.DEAD.value, f"rig {rec.rig_id} died", at=time.monotonic()))
            session = self.sessions.active_for_rig(rec.rig_id)
            if session is not None and session.state is not S.INTERRUPTED:
                self.sessions.move(session, S.INTERRUPTED, f"rig silent for {silent:.1f} s")
            self._probe_due.pop(rec.rig_id, None)

    def _expire_grace(self) -> None:
        now = time.time()
        for session in self.sessions.active():
            if (session.state is S.INTERRUPTED and session.interrupted_at is not None
                    and now - session.interrupted_at > self.cfg.interrupted_grace_s):
                self.sessions.move(session, S.FAILED, "rig did not return within the grace "
                                   f"period of {self.cfg.interrupted_grace_s:g} s")
                self._session_ended(session)

    def _expire_unlisted(self, now: float) -> None:
        for session in self.sessions.active():
            sid = session.session_id
            ex = self.extra[sid]
            if ex.unlisted_at is None or now - ex.unlisted_at < self.cfg.lost_session_wait_s:
                continue
            ex.unlisted_at = None
            if not session.active or ex.eos is not None:
                continue
            self.sessions.move(session, S.FAILED, "rig re-registered without this session; "
                               f"samples after seq {self.seq[sid].durable_upto} are lost")
            self._session_ended(session)

    def _prune(self) -> None:
        """Forget the oldest ended sessions beyond `keep_ended_sessions` (bounded memory)."""
        self._routes.clear()
        for sid in self.sessions.prune(self.cfg.keep_ended_sessions):
            self.seq.pop(sid, None)
            self.extra.pop(sid, None)
            self._acked.pop(sid, None)
            self._acked_at.pop(sid, None)

    def _send_heartbeats(self) -> None:
        """One slice of the rigs per housekeeping round (each rig by its handle), so every rig
        gets a beat per heartbeat interval and 300 rigs never get theirs in one round: that
        round (with the DATA_ACK re-sends) took ~3 ms, during which chunks queued."""
        slices = max(1, round(self.cfg.heartbeat_interval_s / self._housekeeping_s))
        k = self._beat_slice
        self._beat_slice = (k + 1) % slices
        beat = P.encode_control(P.Heartbeat(sender_time=time.time(),
                                            controller_id=self.controller_id))
        for rec in self.registry.alive():
            if rec.handle % slices != k:
                continue
            self.sockets.send_control(rec.identity, beat)
            # Re-send the current cumulative DATA_ACK: a lost ack must not stall a rig's window.
            session = self.sessions.active_for_rig(rec.rig_id)
            if session is not None:
                d = self.seq[session.session_id].durable_upto
                if d >= 0:
                    self.sockets.send_control(rec.identity, self._data_ack(session.session_id))

    # ─────────────────────────────────────────────────────────────────── clock

    def _send_probes(self, now: float) -> None:
        for rec in self.registry.alive():
            due = self._probe_due.setdefault(rec.rig_id, [now])
            if not due or due[0] > now:
                continue
            due.pop(0)
            if not due:
                # ±12.5 % by handle: rigs that registered together drift apart instead of all
                # being probed in the same round every interval
                spread = 1.0 + ((rec.handle * 7) % 16 - 8) / 64
                due.append(now + self.cfg.timesync_interval_s * spread)
            pid = self._next_probe_id
            self._next_probe_id += 1
            t0 = time.time()
            self._probes[pid] = (rec.rig_id, t0, now)
            self._send_rig(rec, P.TimeSync(probe_id=pid, t0=t0))
        if len(self._probes) > 4 * max(1, len(self.registry)):
            cutoff = now - PROBE_EXPIRY_S
            self._probes = {k: v for k, v in self._probes.items() if v[2] >= cutoff}

    def _on_time_sync_reply(self, rec: RigRecord, r: P.TimeSyncReply) -> None:
        t3 = time.time()
        probe = self._probes.pop(r.probe_id, None)
        if probe is None or probe[0] != rec.rig_id:
            self.bad.record("stale_probe", f"probe {r.probe_id}", peer=rec.rig_id)
            return
        rec.clock.add(probe[1], r.t1, r.t2, t3)

    # ─────────────────────────────────────────────────────────────────── data link

    def _internal_error(self, exc: Exception, source: str) -> None:
        self.loop_errors += 1
        self.bad.record("internal", f"{type(exc).__name__}: {exc}")
        log.exception("error handling a %s message", source)

    def _on_data_batch(self, batch: list[Incoming]) -> None:
        """The chunks of one poll round: headers first, then one finiteness check over every
        chunk without a validity mask (P.all_finite), then each chunk in arrival order."""
        now = time.monotonic()
        parsed: list[tuple[Incoming, P.ChunkHeader]] = []
        for inc in batch:
            if inc.truncated or len(inc.frames) != 2:
                self.bad.record("malformed", f"{len(inc.frames)} frames on the data link")
                continue
            try:
                parsed.append((inc, P.parse_chunk_header(inc.frames[0])))
            except P.ProtocolError as exc:
                self.bad.record(exc.kind.value, exc.detail)
        checked = len(parsed) > 1 and P.all_finite(
            [inc.frames[1] for inc, h in parsed if not h.flags & _MASK_BIT])
        routes = self._routes
        for inc, header in parsed:
            try:
                route = routes.get(header.session) if checked else None
                if route is None or not self._on_data_fast(route, inc, header, now):
                    self._on_data(inc, header, now, checked)
            except Exception as exc:  # never let one message take the controller down
                self._internal_error(exc, "data")

    def _on_data_fast(self, route: _Route, inc: Incoming, header: P.ChunkHeader,
                      now: float) -> bool:
        """The steady-state chunk (~2x cheaper than `_on_data`): the next contiguous plain chunk
        of a running session from the rig it belongs to, nothing held. Does exactly what
        `_on_data` would do for it; returns False (having changed nothing) for anything else,
        and `_on_data` takes it."""
        rec = route.rec
        if (header.rig_handle != route.handle or rec.layout is not route.layout
                or route.extra.unlisted_at is not None or self._held
                or route.session.state in _NOT_RUNNING_YET):
            return False
        frame0, frame1 = inc.frames
        ranges = route.seqs.received.ranges
        first = header.first_seq
        if len(frame0) != P.CHUNK_HEADER_SIZE or len(ranges) != 1 or ranges[0][1] != first:
            return False
        chunk = P.decode_plain_chunk(header, frame1, route.layout)
        if chunk is None:
            return False
        n = header.count
        seqs = route.seqs
        self.fast_path_chunks += 1
        ranges[0] = (ranges[0][0], first + n)
        seqs.chunks += 1
        seqs.samples += n
        rec.note_samples(now, n)
        try:
            self.sink.submit(chunk)
        except SinkBusy:
            self.held_events += 1
            self._held.append(chunk)
        runner = self.runner
        runner.chunk(route.sid, chunk, now)
        if runner.inline and not runner.cues.empty():
            self._send_cues()
        return True

    def _on_data(self, inc: Incoming, header: P.ChunkHeader, now: float,
                 finite_checked: bool) -> None:
        rec = self.registry.by_handle(header.rig_handle)
        if rec is None:
            self.bad.record("unknown_rig", f"chunk with handle {header.rig_handle}")
            return
        if self.security is not None and inc.user_id != rec.rig_id:
            self.bad.record("not_allowed", f"{inc.user_id!r} sent a chunk as {rec.rig_id!r}")
            return
        sid = self._sid_text(header)
        try:
            chunk = P.decode_chunk(inc.frames, rec.layout, header, finite_checked=finite_checked)
        except P.ProtocolError as exc:
            self.bad.record(exc.kind.value, exc.detail, peer=rec.rig_id)
            self._data_nack(rec, header, exc.kind, exc.detail)
            return
        session = self.sessions.get(sid)
        if session is None or session.rig_id != rec.rig_id:
            kind = P.ErrorKind.UNKNOWN_SESSION if session is None else P.ErrorKind.WRONG_RIG
            self.bad.record(kind.value, f"chunk for session {sid}", peer=rec.rig_id)
            self._data_nack(rec, header, kind, f"session {sid}")
            return
        ex = self.extra[sid]
        if ex.unlisted_at is not None:
            ex.unlisted_at = None  # the rig still streams it: not lost
        seqs = self.seq[sid]
        adm = seqs.admit(header.first_seq, header.count)
        if adm.opened_gap:
            log.info("session %s: gap before seq %d (have up to %d)", sid, adm.keep[0][0],
                     seqs.received_upto)
        if not adm.keep:
            if header.last_seq <= seqs.durable_upto:
                self._acked[sid] = -2  # force a fresh DATA_ACK: the rig resent acked data
            return
        parts: list[P.SampleChunk]
        if len(adm.keep) == 1 and adm.keep[0] == (header.first_seq, header.first_seq + header.count):
            parts = [chunk]
        else:
            parts = [_slice(chunk, s, e) for s, e in adm.keep]
        rec.note_samples(now, header.count if len(parts) == 1 and parts[0] is chunk
                         else sum(p.count for p in parts))
        if session.state in (S.ASSIGNED, S.ARMED):
            self._mark_running(sid, rec, "first samples arrived")
        if (len(parts) == 1 and parts[0] is chunk and self.security is None
                and header.session not in self._routes):
            self._routes[header.session] = _Route(header.rig_handle, sid, session, seqs, ex,
                                                  rec, rec.layout)
        for part in parts:
            if self._held:
                self._held.append(part)
                continue
            try:
                self.sink.submit(part)
            except SinkBusy:
                self.held_events += 1
                self._held.append(part)
        for part in parts:
            self.runner.chunk(sid, part, now)
        if self.runner.inline and not self.runner.cues.empty():
            self._send_cues()  # now, not after the rest of the round: the cue is due

    def _sid_text(self, header: P.ChunkHeader) -> str:
        """Text form of a chunk's session id, cached by its raw bytes (building a UUID and its
        text costs several µs per chunk)."""
        key = session_key(header)
        text = self._sid_cache.get(key)
        if text is None:
            if len(self._sid_cache) > 100_000:
                self._sid_cache.clear()
            text = self._sid_cache[key] = str(uuid.UUID(bytes=key))
        return text

    def _retry_held(self) -> None:
        while self._held:
            try:
                self.sink.submit(self._held[0])
            except SinkBusy:
                return
            self._held.popleft()

    def _data_nack(self, rec: RigRecord, h: P.ChunkHeader, kind: P.ErrorKind, reason: str) -> None:
        self._send_rig(rec, P.DataNack(session_id=str(h.session_id), first_seq=h.first_seq,
                                       count=h.count, code=kind, reason=reason[:4000]))

    def _data_ack(self, sid: str) -> tuple[bytes, bytes]:
        """The encoded DATA_ACK of a session (P.encode_data_ack: no model per ack)."""
        seqs = self.seq[sid]
        return P.encode_data_ack(sid, seqs.durable_upto, seqs.highest_received)

    def _send_acks(self) -> None:
        durable = self.sink.durable()
        now = time.monotonic()
        min_gap = self.cfg.ack_min_interval_s
        for sid, d in durable.items():
            seqs = self.seq.get(sid)
            if seqs is None:
                continue
            if d > seqs.durable_upto:
                seqs.durable_upto = d
            if self._acked.get(sid, -1) == seqs.durable_upto:
                continue
            session = self.sessions.get(sid)
            if session is None:
                continue
            ex = self.extra.get(sid)
            eos = ex is not None and ex.eos is not None
            if not eos and now - self._acked_at.get(sid, -math.inf) < min_gap:
                continue  # coalesced: the next commit or housekeeping round sends it
            rec = self.registry.get(session.rig_id)
            if rec is not None and rec.alive:
                self.sockets.send_control(rec.identity, self._data_ack(sid))
            self._acked[sid] = seqs.durable_upto
            self._acked_at[sid] = now
            if eos:
                self._check_eos(session)

    def _send_cues(self) -> None:
        while True:
            try:
                sid, cue, received_at = self.runner.cues.get_nowait()
            except Exception:
                return
            session = self.sessions.get(sid)
            if session is None:
                continue
            rec = self.registry.get(session.rig_id)
            if rec is None or not rec.alive:
                continue
            cue = cue.model_copy(update={"session_id": sid, "controller_time": time.time()})
            if self._send_rig(rec, cue):
                self.cues_sent += 1
                self._cue_latency.append(time.monotonic() - received_at)

    # ─────────────────────────────────────────────────────────────────── API

    def _on_api(self, inc: Incoming) -> None:
        from lab_controller.controller.api import handle_api

        handle_api(self, inc)

    def api_reply(self, envelope: list[bytes], reply: P.ApiReply | P.Error) -> None:
        self.sockets.send_api(envelope, P.encode_control(reply))

    # ─────────────────────────────────────────────────────────────────── views

    def session_row(self, session: Session, events: bool = False) -> dict[str, Any]:
        """The API's session row (docs/protocol.md §16)."""
        sid = session.session_id
        seqs = self.seq.get(sid)
        ex = self.extra.get(sid)
        row: dict[str, Any] = {
            "session_id": sid,
            "rig_id": session.rig_id,
            "trainee": session.trainee,
            "exercise_id": session.exercise,
            "rubric_version": session.rubric_version,
            "class_id": session.class_id,
            "state": session.state.value,
            "reason": session.reason,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
            "started_at": ex.started_at if ex else None,
            "ended_at": ex.ended_at if ex else None,
            "adopted": ex.adopted if ex else False,
            "clock_offset_s": ex.clock_offset_s if ex else None,
            "samples": seqs.samples if seqs else 0,
            "durable_seq": seqs.durable_upto if seqs else -1,
            "received_seq": seqs.highest_received if seqs else -1,
            "gaps": seqs.gaps_detected if seqs else 0,
            "open_gaps": [list(g) for g in seqs.open_gaps] if seqs else [],
            "duplicates": seqs.duplicate_samples if seqs else 0,
            "duplicate_chunks": seqs.duplicate_chunks if seqs else 0,
            "end_of_stream": (
                {"last_seq": ex.eos.last_seq, "reason": ex.eos.reason.value}
                if ex and ex.eos else None
            ),
        }
        if events:
            row["events"] = [
                {"from": e.from_state.value if e.from_state else None, "to": e.to_state.value,
                 "at": e.at, "reason": e.reason}
                for e in session.history
            ]
        return row

    def rig_row(self, rec: RigRecord) -> dict[str, Any]:
        """The API's rig row (docs/protocol.md §16) plus counters."""
        row = rec.to_dict(time.monotonic(), time.time())
        session = self.sessions.active_for_rig(rec.rig_id)
        row["session_id"] = session.session_id if session else rec.session_id
        row["session_state"] = session.state.value if session else None
        row["trainee"] = session.trainee if session else None
        row["exercise_id"] = session.exercise if session else None
        return row

    def status(self) -> dict[str, Any]:
        """Controller-wide counters (bad input per kind, data path, cue latency)."""
        states: dict[str, int] = {}
        for s in self.sessions.all():
            states[s.state.value] = states.get(s.state.value, 0) + 1
        sink_stats = getattr(self.sink, "stats", None)
        return {
            "controller_id": self.controller_id,
            "started_at": self.started_wall,
            "uptime_s": round(time.time() - self.started_wall, 3),
            "endpoints": self.endpoints,
            "rigs": len(self.registry),
            "rigs_alive": len(self.registry.alive()),
            "sessions_by_state": states,
            "bad_input": self.bad.snapshot(),
            "bad_input_total": self.bad.total,
            "loop_errors": self.loop_errors,
            "liveness_holds": self.liveness_holds,
            "send_failures": self._sockets.send_failures if self._sockets else 0,
            "held_chunks": len(self._held),
            "held_events": self.held_events,
            "fast_path_chunks": self.fast_path_chunks,
            "realtime": self.realtime,
            "pending_commands": len(self._commands),
            "observer_jobs_processed": self.runner.processed,
            "observer_errors": self.runner.errors,
            "cues_sent": self.cues_sent,
            "cue_latency_ms": _percentiles_ms(self._cue_latency),
            # its parts: chunk arrival → scoring thread takes it (all chunks), scoring time of
            # chunks that fired a cue
            "observer_wait_ms": _percentiles_ms(self.runner.queue_wait),
            "cue_compute_ms": _percentiles_ms(self.runner.cue_compute),
            "loop_round_ms": _percentiles_ms(self._round_times),
            "chunks_per_round": _percentiles(self._data_per_round),
            "dead_detections": list(self.dead_detections),
            "sink": sink_stats() if callable(sink_stats) else {},
        }

    def health(self, rig_ids: Sequence[str]) -> list[HealthCheck]:
        """Health check per rig for a class launch (loop thread only)."""
        return [health_check(self, rid) for rid in rig_ids]


def _phantom(rig_id: str) -> Session:
    """A session-shaped placeholder for a start that never created one (reports only)."""
    return Session(session_id="", rig_id=rig_id, exercise="", trainee="", state=S.FAILED)


def _order_stats(values: Iterable[float], n: int) -> tuple[float, float, float] | None:
    """p50, p99 and max of the ``n`` values of a loop-owned window (a deque).

    Called by `status()` from other threads (API, dashboards, benchmarks) while the loop
    runs: sorting a 10 000-entry deque holds the GIL ~2 ms per window, a stall of the loop
    on every status poll. Copying it out takes ~0.3 ms; numpy's partition then runs without
    the GIL."""
    if n == 0:
        return None
    arr = np.fromiter(values, dtype=np.float64, count=n)
    i50, i99 = n // 2, min(n - 1, math.ceil(0.99 * n) - 1)
    part = np.partition(arr, (i50, i99, n - 1))
    return float(part[i50]), float(part[i99]), float(part[n - 1])


def _percentiles_ms(lat: deque[float]) -> dict[str, Any]:
    """n, p50 and p99 in ms of latencies in seconds."""
    n = len(lat)
    st = _order_stats(lat, n)
    return {
        "n": n,
        "p50": round(1000 * st[0], 3) if st else None,
        "p99": round(1000 * st[1], 3) if st else None,
    }


def _percentiles(values: deque[int]) -> dict[str, Any]:
    """n, p50, p99 and max of counts."""
    n = len(values)
    st = _order_stats(values, n)
    return {
        "n": n,
        "p50": int(st[0]) if st else None,
        "p99": int(st[1]) if st else None,
        "max": int(st[2]) if st else None,
    }


def _slice(chunk: P.SampleChunk, start: int, end: int) -> P.SampleChunk:
    """Samples [start, end) of `chunk` (views, no copy) with a consistent header."""
    h = chunk.header
    i0, i1 = start - h.first_seq, end - h.first_seq
    header = replace(h, first_seq=start, count=end - start,
                     rig_time_first=h.rig_time_first + i0 * h.period)
    return P.SampleChunk(header=header, poses=chunk.poses[i0:i1], analog=chunk.analog[i0:i1],
                         valid=chunk.valid[i0:i1])


__all__ = ["CommandOutcome", "Controller", "IllegalTransition"]
