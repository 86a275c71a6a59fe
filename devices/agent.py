"""The rig agent: the rig side of the wire protocol (docs/protocol.md).

It registers (HELLO/WELCOME), beats (both ways, controller lost after 3 silent intervals),
obeys START/STOP/ABORT with ACK/NACK, turns driver blocks into 10-30 ms chunks, keeps every chunk
until a DATA_ACK covers it (memory up to a bound, then the on-disk `telemetry.spool.Spool`),
respects the controller's credit window, re-sends after reconnecting, ends each stream with the
END_OF_STREAM handshake, answers clock probes and hands cues to the driver.

`RigAgent` is one rig; `run()` blocks until `stop()` and is thread-friendly. `AgentGroup` runs
many rigs in one thread with one poller (load tests: hundreds of rigs without hundreds of
threads). `python -m devices.agent --controller tcp://127.0.0.1:5555 --rig-id rig-01` runs it
as a process.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import math
import os
import select
import signal
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import zmq
import zmq.auth

from devices.driver import DriverInfo, PoseSource, SampleBlock, SessionContext, check_driver
from devices.minimal import MinimalDriver
from lab_controller import protocol as P
from telemetry.spool import Spool, SpoolError, SpoolFullError, SpoolRecord

log = logging.getLogger("devices.agent")

# ── tunables (docs/protocol.md §18 gives the protocol's side of each) ─────────────────────────
DEFAULT_CHUNK_S = 0.02  # performance.md: batch 10-30 ms of samples per message
MAX_CHUNK_S = 0.1  # a late loop catches up in chunks of at most 100 ms (12 samples at 120 Hz)
DEFAULT_MEMORY_LIMIT = 8 * 1024 * 1024  # ~6 min of a 6-tracker 120 Hz rig before spilling
HELLO_RETRY_S = 1.0
EOS_RETRY_S = 2.0
ACK_TIMEOUT_S = 5.0  # go-back-N re-send when the oldest in-flight chunk waits this long
SPOOL_SYNC_S = 1.0  # rig-side spool is a memory overflow; fsync once a second is plenty
DATA_SNDHWM = 10_000  # only a safety net: the credit window bounds what is in flight
COMMAND_MEMORY = 64  # answers kept to re-send for a repeated command id (docs §9)
LOG_BURST_S = 10.0
SPOOL_KIND_CHUNK = 1
_SPOOL_PREFIX = struct.Struct("<I")  # len(frame0); then frame0 and frame1
_RESEND = int(P.ChunkFlags.RESEND)
_CAPABILITIES = frozenset(c.value for c in P.Capability)
# Ack-timeout and END_OF_STREAM re-send checks: every tenth of the shorter of the two timeouts
# (seconds), at most every HOUSEKEEPING_S (0.2 s with the defaults: 5 s and 2 s).
HOUSEKEEPING_S = 0.25
# pyzmq's Cython send/recv/get, without the Python wrapper of `zmq.Socket` (~1 µs per call;
# a 100-rig worker makes ~15 000 such calls a second)
_zsend = zmq.backend.Socket.send
_zrecv = zmq.backend.Socket.recv
_zget = zmq.backend.Socket.get
# plain ints: pyzmq's constants are enum flags, and `int & Flag` runs Python enum code
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
# gc.set_threshold() of a process that runs an AgentGroup (freeze_gc=True). Every chunk stays
# alive until its DATA_ACK (hundreds of ms), so at CPython's 700 the young generation is
# collected many times a second and survivors pile into gen-1/gen-2 passes that stop the
# sweep (and a cue's delivery) for milliseconds; the controller measured 0.4-0.5 s of pauses
# per 15 s at 150 rigs with 700 and 0-1 collections with these (lab_controller ControllerConfig
# .gc_thresholds, the same reasoning).
GROUP_GC_THRESHOLDS = (10_000, 50, 100)


@dataclass
class AgentConfig:
    """Everything a rig agent needs besides its driver."""

    controller: str  # control endpoint, e.g. tcp://127.0.0.1:5555
    rig_id: str
    site_id: str = ""
    data_endpoint: str | None = None  # override WELCOME / the port+1 default
    chunk_s: float = DEFAULT_CHUNK_S
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT
    spool_dir: Path | None = None  # None: memory only (no bound)
    spool_max_bytes: int | None = None
    hello_retry_s: float = HELLO_RETRY_S
    eos_retry_s: float = EOS_RETRY_S
    ack_timeout_s: float = ACK_TIMEOUT_S
    software_version: str = "0.1.0"
    coalesce: bool = True  # join a backlog of queued chunks into chunks of up to 100 ms
    curve_server_key: bytes | None = None  # Z85 public key of the controller
    curve_public_key: bytes | None = None
    curve_secret_key: bytes | None = None


@dataclass(slots=True)
class _Out:
    """One encoded chunk kept until acknowledged."""

    key: bytes  # session uuid bytes
    first_seq: int
    last_seq: int
    frame0: bytes
    frame1: bytes
    order: int  # global production/read order (re-send keeps it)
    handle: int  # rig handle written in frame0
    nbytes: int  # len(frame0) + len(frame1)
    spool_id: int | None = None
    sent: bool = False
    sent_at: float = 0.0


@dataclass
class _Stream:
    """One session's sample stream on this rig."""

    session_id: str
    key: bytes
    exercise_id: str = ""
    next_seq: int = 0
    durable_seq: int = -1
    inflight: deque[_Out] = field(default_factory=deque)
    ended: P.EndReason | None = None
    end_detail: str = ""
    eos_sent_at: float = -math.inf
    last_progress: float = 0.0
    recovered: bool = False  # found in the spool at start-up (previous agent run)
    discarded: bool = False  # controller said resume=false
    prefix: bytes = b""  # P.chunk_prefix for `prefix_handle` (constant header bytes)
    prefix_handle: int = -1

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1


class _BurstLog:
    """Log the first event of a kind, then at most once per `LOG_BURST_S` with a count."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, kind: str, msg: str, *args: object, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) < LOG_BURST_S:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        extra = self._suppressed.pop(kind, 0)
        log.log(level, msg + (f" (+{extra} similar)" if extra else ""), *args)


class RigAgent:
    """One rig: protocol state machine, data store and sockets. See the module docstring."""

    def __init__(
        self, config: AgentConfig, driver: PoseSource, context: zmq.Context[Any] | None = None
    ) -> None:
        self.config = config
        self.driver = driver
        self.info: DriverInfo = check_driver(driver)
        self.layout = P.make_layout(self.info.trackers, self.info.analog)
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._blog = _BurstLog()
        # connection
        self.control: zmq.Socket[bytes] | None = None
        self.data: zmq.Socket[bytes] | None = None
        self.registered = False
        self.rejected: P.Reject | None = None
        self.rig_handle = 0
        self.controller_id: str | None = None
        self.heartbeat_interval = P.DEFAULT_HEARTBEAT_INTERVAL_S
        self.max_inflight_chunks = P.DEFAULT_MAX_INFLIGHT_CHUNKS
        self.max_inflight_bytes = P.DEFAULT_MAX_INFLIGHT_BYTES
        self._last_rx = 0.0
        self._last_hb_tx = -math.inf
        self._last_hello = -math.inf
        self._next_housekeeping = 0.0
        self._housekeeping_s = min(HOUSEKEEPING_S, config.ack_timeout_s / 10, config.eos_retry_s / 10)
        # set by every send on the control socket: a send may consume the socket's ZMQ_FD
        # wake-up for input that arrived meanwhile, so `AgentGroup` then checks for input itself
        self.control_sent = False
        self.control_generation = 0  # bumped whenever the control socket is replaced
        # set by `AgentGroup`: the agent lists itself there when it sent on its control socket
        # or replaced it, so the group need not scan every agent after each wake-up
        self.group_notes: _GroupNotes | None = None
        # session / streams
        self.state = P.RigState.IDLE
        self.active: _Stream | None = None
        self.active_ctx: SessionContext | None = None
        self._active_started = 0.0
        self.streams: dict[bytes, _Stream] = {}
        self._answers: OrderedDict[str, P.Ack | P.Nack] = OrderedDict()
        self._next_read = 0.0
        self._max_chunk = max(1, math.ceil(self.info.rate_hz * MAX_CHUNK_S))
        self._period = 1.0 / self.info.rate_hz
        self._last_valid: Any = None  # validity rows of the latest block (numpy bool (n, T))
        self._keys: dict[str, bytes] = {}  # session id text -> 16 bytes (acks arrive as text)
        # store
        self._pending: deque[_Out] = deque()
        self._order = 0
        self.mem_bytes = 0
        self.inflight_chunks = 0
        self.inflight_bytes = 0
        self.spool: Spool | None = None
        self._spool_unread = 0
        self._spool_iter: Iterator[SpoolRecord] | None = None
        self._spool_last_read = 0
        self._spool_ids: deque[int] = deque()
        self._spool_acked: set[int] = set()
        self._spool_dirty = False
        self._last_spool_sync = 0.0
        # statistics (tests and the benchmark read these)
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "hello_sent", "welcomes", "reconnects", "chunks_sent", "samples_sent",
                "chunks_resent", "samples_produced", "acks", "data_nacks", "eagain", "spilled",
                "spool_read", "cues", "time_syncs", "errors_rx", "bad_input", "eos_sent",
                "eos_acked", "commands", "window_full", "coalesced",
            ),
            0,
        )  # fmt: skip
        self.cue_latencies: deque[float] = deque(maxlen=10_000)  # rig-clock seconds
        if config.spool_dir is not None:
            self._open_spool(Path(config.spool_dir))

    # ── public surface ─────────────────────────────────────────────────────────────────────
    def run(self) -> None:
        """Connect and serve until `stop()` (or a REJECT without retry); then close."""
        self.open()
        poller = zmq.Poller()
        registered_sock: zmq.Socket[bytes] | None = None
        try:
            while not self._stop.is_set():
                timeout = self.tick(time.monotonic())
                if self.control is not registered_sock:  # replaced after a lost controller
                    if registered_sock is not None:
                        poller.unregister(registered_sock)
                    registered_sock = self.control
                    if registered_sock is not None:
                        poller.register(registered_sock, zmq.POLLIN)
                if registered_sock is None:
                    time.sleep(timeout)
                    continue
                events = dict(poller.poll(math.ceil(max(0.0, timeout) * 1000.0)))
                if registered_sock in events:
                    self.handle_control()
        finally:
            if registered_sock is not None and registered_sock is self.control:
                poller.unregister(registered_sock)
            self.close()

    def stop(self) -> None:
        """Ask `run()` to return (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def open(self) -> None:
        """Create the control socket; HELLO goes out on the first `tick`."""
        self._connect_control()

    def close(self) -> None:
        """Close sockets; keep unacknowledged in-memory chunks in the spool if there is one."""
        self._close_sockets()
        if self.spool is not None:
            try:
                self._persist_memory()
                self.spool.close()
            except SpoolError as exc:
                log.error("rig %s: could not persist unacknowledged data: %s", self.config.rig_id, exc)
            self.spool = None

    def pump(self) -> None:
        """Send queued chunks the credit window allows (after acknowledgements arrived)."""
        if self.registered and (self._pending or self._spool_unread):
            self._pump(time.monotonic())

    @property
    def backlog_chunks(self) -> int:
        """Chunks produced but not yet acknowledged (memory + spool)."""
        return len(self._pending) + self.inflight_chunks + self._spool_unread

    @property
    def backlog_bytes(self) -> int:
        spool = self.spool.pending_bytes if self.spool is not None and self._spool_unread else 0
        return self.mem_bytes + spool

    # ── the loop body ────────────────────────────────────────────────────────────────────
    def tick(self, now: float) -> float:
        """Do everything that is due at monotonic ``now``; return seconds until the next duty."""
        if not self.tick_due(now):
            return 0.0
        nxt = now + 0.05
        if self.active is not None:
            nxt = min(nxt, self._next_read)
        if self.registered:
            nxt = min(nxt, self._last_hb_tx + self.heartbeat_interval)
        else:
            nxt = min(nxt, self._last_hello + self.config.hello_retry_s)
        return max(0.0, nxt - time.monotonic())

    def tick_due(self, now: float, pump: bool = True) -> bool:
        """`tick` without computing the next duty time (False: the agent stopped itself).

        ``pump=False`` leaves the queued chunks to a `pump_due` call: `AgentGroup` reads a
        batch of agents' drivers, then sends their chunks back to back (`SWEEP_SEND_EVERY`).
        """
        if self.rejected is not None and self.rejected.retry_after_s is None:
            self._stop.set()
            return False
        if self.control is None:
            self._connect_control()
        registered = self.registered
        if not registered:
            retry = self.config.hello_retry_s
            if self.rejected is not None and self.rejected.retry_after_s is not None:
                retry = max(retry, self.rejected.retry_after_s)
            if now - self._last_hello >= retry:
                self._send_hello(now)
        elif now - self._last_rx > P.HEARTBEAT_MISSES_DEAD * self.heartbeat_interval:
            self._lost(
                f"no message from the controller for {P.HEARTBEAT_MISSES_DEAD} heartbeat intervals", now
            )
        elif now - self._last_hb_tx >= self.heartbeat_interval:
            self._send_heartbeat(now)
        if self.active is not None and now >= self._next_read:
            self._read_driver()
            self._next_read = now + self.config.chunk_s
        if self.registered:
            if pump and (self._pending or self._spool_unread):
                self._pump(now)
            if now >= self._next_housekeeping:
                self._next_housekeeping = now + self._housekeeping_s
                self._check_ack_timeouts(now)
                self._resend_eos(now)
        if self._spool_dirty and self.spool is not None and now - self._last_spool_sync >= SPOOL_SYNC_S:
            self._sync_spool(now)
        return True

    def pump_due(self, now: float) -> None:
        """Send what `tick_due(now, pump=False)` left queued (if the window allows)."""
        if self.registered and (self._pending or self._spool_unread):
            self._pump(now)

    def handle_control(self, signalled: bool = False) -> None:
        """Read and act on every control message waiting on the control socket.

        ``signalled``: the socket's ``ZMQ_FD`` just reported input (`AgentGroup`'s epoll), so
        the first recv is tried without asking ``ZMQ_EVENTS`` first (a message is almost always
        there; if not, the recv's zmq.Again ends the call, as ``ZMQ_EVENTS`` would have).
        """
        sock = self.control
        # ZMQ_EVENTS before each recv rather than recv until zmq.Again: an exception costs more.
        # Frames (copy=False) carry their RCVMORE flag: pyzmq's getsockopt builds an enum member
        # per call (~1 µs), a Frame and its bytes cost less.
        while (
            sock is not None
            and sock is self.control
            and (signalled or cast(int, _zget(sock, _EVENTS)) & _POLLIN)
        ):
            signalled = False
            try:
                frame = _zrecv(sock, _NOBLOCK, False)
                frames = [frame.bytes]
                while frame.more:
                    frame = _zrecv(sock, 0, False)
                    frames.append(frame.bytes)
            except zmq.Again:
                return
            self._last_rx = time.monotonic()
            ack = P.parse_data_ack(frames)
            if ack is not None:  # by far the most frequent message
                try:
                    self._on_data_ack(ack[0], ack[1])
                except Exception:  # as for every message: a bug must not kill the rig
                    log.exception("rig %s: failed to handle data_ack", self.config.rig_id)
                continue
            rx_rig_time = self.driver.clock()  # receive time of a probe or a cue (~1 µs late)
            try:
                msg = P.decode_control(frames)
            except P.ProtocolError as exc:
                self.stats["bad_input"] += 1
                self._blog(f"bad:{exc.kind}", "rig %s: bad control message: %s", self.config.rig_id, exc)
                if exc.kind is not P.ErrorKind.BAD_VERSION or len(frames) == 2:
                    ref = P.peek_type(frames[1]) if len(frames) == 2 else ""
                    self._send(P.error_for(exc, ref))
                continue
            try:
                self._dispatch(msg, rx_rig_time)
            except Exception:  # a bug must not kill the rig; data is kept regardless
                log.exception("rig %s: failed to handle %s", self.config.rig_id, msg.type)

    # ── connection management ──────────────────────────────────────────────────────────────
    def _secure(self, sock: zmq.Socket[bytes]) -> None:
        c = self.config
        if c.curve_server_key is not None:
            if c.curve_public_key is None or c.curve_secret_key is None:
                raise ValueError("CurveZMQ needs the rig's public and secret keys too")
            sock.curve_serverkey = c.curve_server_key
            sock.curve_publickey = c.curve_public_key
            sock.curve_secretkey = c.curve_secret_key

    def _common_options(self, sock: zmq.Socket[bytes]) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.HEARTBEAT_IVL, P.ZMTP_HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, P.ZMTP_HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, P.ZMTP_HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._secure(sock)

    def _connect_control(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        self._common_options(sock)
        sock.setsockopt(zmq.MAXMSGSIZE, P.MAX_CONTROL_BYTES + 1024)
        sock.connect(self.config.controller)
        self.control = sock
        self._replaced_control()

    def _replaced_control(self) -> None:
        self.control_generation += 1
        if self.group_notes is not None:
            self.group_notes.replaced.append(self)

    def _connect_data(self, endpoint: str) -> None:
        if self.data is not None:
            self.data.close(0)
        sock = self._ctx.socket(zmq.PUSH)
        self._common_options(sock)
        sock.setsockopt(zmq.SNDHWM, DATA_SNDHWM)
        sock.connect(endpoint)
        self.data = sock

    def _close_sockets(self) -> None:
        for sock in (self.control, self.data):
            if sock is not None:
                sock.close(0)
        had_control = self.control is not None
        self.control = None
        self.data = None
        if had_control:
            self._replaced_control()

    def _lost(self, why: str, now: float) -> None:
        """The controller is gone (or restarted): fresh sockets, re-register, re-send later."""
        log.warning("rig %s: controller lost (%s); re-registering", self.config.rig_id, why)
        self.stats["reconnects"] += 1
        self.registered = False
        self._requeue_inflight()
        self._close_sockets()
        self._connect_control()
        self._last_hello = -math.inf

    def _requeue_inflight(self) -> None:
        """Every sent-but-unacknowledged chunk goes back to the front of the queue, in order."""
        back: list[_Out] = []
        for stream in self.streams.values():
            back.extend(stream.inflight)
            stream.inflight.clear()
        back.sort(key=lambda o: o.order)
        self._pending.extendleft(reversed(back))
        self.inflight_chunks = 0
        self.inflight_bytes = 0

    # ── sending control ──────────────────────────────────────────────────────────────────
    def _send(self, msg: Any) -> bool:
        sock = self.control
        if sock is None:
            return False
        f0, f1 = P.encode_control(msg)
        if not self.control_sent:
            self.control_sent = True
            if self.group_notes is not None:
                self.group_notes.sent.append(self)
        try:
            _zsend(sock, f0, _SNDMORE_NOBLOCK)
            _zsend(sock, f1, _NOBLOCK)
        except zmq.Again:
            self.stats["eagain"] += 1
            return False
        return True

    def _send_hello(self, now: float) -> None:
        backlog = [
            P.BacklogEntry(
                session_id=s.session_id,
                first_seq=max(0, s.durable_seq + 1),
                last_seq=s.last_seq,
                chunks=len(s.inflight),
            )
            for s in self.streams.values()
            if s.last_seq > s.durable_seq
        ][:1024]
        active = None
        if self.active is not None:
            active = P.ActiveSession(
                session_id=self.active.session_id,
                exercise_id=self.active.exercise_id,
                state=self.state,
                next_seq=self.active.next_seq,
            )
        hello = P.Hello(
            rig_id=self.config.rig_id,
            site_id=self.config.site_id,
            trackers=[P.TrackerSpec(name=n, role=P.TrackerRole(r)) for n, r in self.info.trackers],
            rate_hz=self.info.rate_hz,
            analog=list(self.info.analog),
            software_version=self.config.software_version,
            capabilities=[P.Capability.TIME_SYNC, P.Capability.SELF_FINISH]
            + ([P.Capability.SPOOL] if self.spool is not None else [])
            + [P.Capability(c) for c in self.info.capabilities if c in _CAPABILITIES],
            public_key=None
            if self.config.curve_public_key is None
            else self.config.curve_public_key.decode(),
            layout_id=self.layout.layout_id,
            rig_time=self.driver.clock(),
            active_session=active,
            backlog=backlog,
        )
        self._last_hello = now
        if self._send(hello):
            self.stats["hello_sent"] += 1

    def _status_fields(self) -> dict[str, Any]:
        s = self.active
        if s is None and self.state is P.RigState.STOPPING:
            s = next((x for x in self.streams.values() if x.ended is not None and not x.recovered), None)
        return {
            "state": self.state,
            "session_id": None if s is None else s.session_id,
            "next_seq": None if s is None else s.next_seq,
            "backlog_chunks": self.backlog_chunks,
            "backlog_bytes": self.backlog_bytes,
        }

    def _send_heartbeat(self, now: float) -> None:
        self._last_hb_tx = now
        self._send(
            P.Heartbeat(
                sender_time=self.driver.clock(),
                trackers_valid=None if self._last_valid is None else self._last_valid[-1].tolist(),
                **self._status_fields(),
            )
        )

    def _send_status(self, detail: str = "") -> None:
        if self.registered:
            self._send(P.Status(detail=detail[:4096], **self._status_fields()))

    # ── dispatch ─────────────────────────────────────────────────────────────────────────
    def _dispatch(self, msg: P.ControlMessage, rx_rig_time: float) -> None:
        if isinstance(msg, P.DataAck):  # by far the most frequent
            self._on_data_ack(msg.session_id, msg.durable_seq)
        elif isinstance(msg, P.TimeSync):
            self.stats["time_syncs"] += 1
            self._send(
                P.TimeSyncReply(probe_id=msg.probe_id, t0=msg.t0, t1=rx_rig_time, t2=self.driver.clock())
            )
        elif isinstance(msg, P.Heartbeat):
            if msg.controller_id and self.controller_id and msg.controller_id != self.controller_id:
                self._lost("controller id changed (restart)", time.monotonic())
        elif isinstance(msg, P.Welcome):
            self._on_welcome(msg)
        elif isinstance(msg, P.Reject):
            self.rejected = msg
            self.registered = False
            log.error("rig %s: registration rejected: %s %s", self.config.rig_id, msg.code, msg.reason)
        elif isinstance(msg, P.Start):
            self._command(msg, self._on_start)
        elif isinstance(msg, P.Stop):
            self._command(msg, lambda m: self._on_stop(m, P.EndReason.STOPPED))
        elif isinstance(msg, P.Abort):
            self._command(msg, lambda m: self._on_stop(m, P.EndReason.ABORTED))
        elif isinstance(msg, P.Cue):
            self._on_cue(msg, rx_rig_time)
        elif isinstance(msg, P.EndOfStreamAck):
            self._on_eos_ack(msg)
        elif isinstance(msg, P.DataNack):
            self._on_data_nack(msg)
        elif isinstance(msg, P.Error):
            self.stats["errors_rx"] += 1
            self._blog(
                f"err:{msg.code}",
                "rig %s: controller reports %s: %s",
                self.config.rig_id,
                msg.code,
                msg.detail,
            )
            if msg.code is P.ErrorKind.UNKNOWN_RIG and self.registered:
                self._lost("controller does not know this rig", time.monotonic())
        else:
            self.stats["bad_input"] += 1
            self._send(
                P.Error(
                    code=P.ErrorKind.UNKNOWN_TYPE, detail=f"a rig does not take {msg.type}", ref_type=msg.type
                )
            )

    def _on_welcome(self, w: P.Welcome) -> None:
        same = self.registered and w.controller_id == self.controller_id and w.rig_handle == self.rig_handle
        if not same and self.registered:
            self._requeue_inflight()  # new handle: what was in flight is re-sent with it
        self.stats["welcomes"] += 1
        self.rejected = None
        self.registered = True
        self.rig_handle = w.rig_handle
        self.controller_id = w.controller_id
        self.heartbeat_interval = w.heartbeat_interval_s
        self.max_inflight_chunks = w.max_inflight_chunks
        self.max_inflight_bytes = w.max_inflight_bytes
        self._last_rx = time.monotonic()
        endpoint = self.config.data_endpoint or _reachable(
            w.data_endpoint or P.data_endpoint_for(self.config.controller), self.config.controller
        )
        if not same or self.data is None:
            self._connect_data(endpoint)
        for entry in w.resume:
            stream = self.streams.get(uuid.UUID(entry.session_id).bytes)
            if stream is None:
                continue
            if not entry.resume:
                log.error(
                    "rig %s: controller refuses session %s: discarding %d unacknowledged samples",
                    self.config.rig_id,
                    stream.session_id,
                    stream.last_seq - stream.durable_seq,
                )
                stream.discarded = True
                self._on_data_ack(stream.session_id, stream.last_seq)
                if stream is self.active:
                    self._end_session(P.EndReason.ABORTED, "controller refused the session")
                self._forget(stream)
                continue
            if entry.durable_seq < stream.durable_seq:
                log.error(
                    "rig %s: controller's durable seq for %s went back from %d to %d",
                    self.config.rig_id,
                    stream.session_id,
                    stream.durable_seq,
                    entry.durable_seq,
                )
            self._on_data_ack(stream.session_id, entry.durable_seq)
        if not w.active_session_ok and self.active is not None:
            self._end_session(P.EndReason.ABORTED, "controller ended the session while we were away")
        for stream in self.streams.values():
            stream.eos_sent_at = -math.inf  # re-send pending END_OF_STREAMs now
            stream.last_progress = time.monotonic()
        self._send_heartbeat(time.monotonic())
        log.info("rig %s: registered, handle %d", self.config.rig_id, self.rig_handle)

    # ── commands ─────────────────────────────────────────────────────────────────────────
    def _command(self, cmd: P.Start | P.Stop | P.Abort, handler: Callable[[Any], P.Ack | P.Nack]) -> None:
        self.stats["commands"] += 1
        answer = self._answers.get(cmd.command_id)
        if answer is None:
            try:
                answer = handler(cmd)
            except Exception as exc:
                log.exception("rig %s: %s failed", self.config.rig_id, cmd.type)
                answer = P.Nack(command_id=cmd.command_id, code=P.NackCode.INTERNAL, reason=str(exc)[:4096])
            self._answers[cmd.command_id] = answer
            while len(self._answers) > COMMAND_MEMORY:
                self._answers.popitem(last=False)
        self._send(answer)
        self._send_status()

    def _ack(self, command_id: str, **detail: Any) -> P.Ack:
        return P.Ack(command_id=command_id, rig_time=self.driver.clock(), detail=detail)

    def _on_start(self, cmd: P.Start) -> P.Ack | P.Nack:
        def nack(code: P.NackCode, reason: str) -> P.Nack:
            return P.Nack(command_id=cmd.command_id, code=code, reason=reason[:4096])

        key = uuid.UUID(cmd.session_id).bytes
        if self.active is not None and self.active.key == key:
            return self._ack(cmd.command_id, first_seq=0, already_running=True)
        if self.state is P.RigState.ERROR:
            return nack(P.NackCode.DRIVER_ERROR, "driver failed earlier; rig needs an operator")
        if self.state is not P.RigState.IDLE:
            return nack(P.NackCode.BUSY, f"rig is {self.state.value}")
        if key in self.streams:
            return nack(P.NackCode.BAD_STATE, "session already ran on this rig")
        ctx = SessionContext(
            session_id=cmd.session_id,
            exercise_id=cmd.exercise_id,
            trainee=cmd.trainee,
            rubric_version=cmd.rubric_version,
            duration_s=cmd.duration_s,
        )
        try:
            self.driver.start(ctx, dict(cmd.scene), dict(cmd.params))
        except ValueError as exc:
            return nack(P.NackCode.INVALID_SCENE, str(exc))
        except Exception as exc:
            log.exception("rig %s: driver failed to start", self.config.rig_id)
            return nack(P.NackCode.DRIVER_ERROR, f"{type(exc).__name__}: {exc}")
        stream = _Stream(
            session_id=cmd.session_id, key=key, exercise_id=cmd.exercise_id, last_progress=time.monotonic()
        )
        self.streams[key] = stream
        self.active = stream
        self.active_ctx = ctx
        self._active_started = self.driver.clock()
        self.state = P.RigState.RUNNING
        self._next_read = time.monotonic() + self.config.chunk_s
        return self._ack(cmd.command_id, first_seq=0)

    def _on_stop(self, cmd: P.Stop | P.Abort, reason: P.EndReason) -> P.Ack | P.Nack:
        key = uuid.UUID(cmd.session_id).bytes
        stream = self.active
        if stream is not None and stream.key == key:
            self._end_session(reason, cmd.reason)
            return self._ack(cmd.command_id, last_seq=stream.last_seq)
        stream = self.streams.get(key)
        if stream is not None and stream.ended is not None:
            return self._ack(cmd.command_id, last_seq=stream.last_seq, already_ended=True)
        return P.Nack(
            command_id=cmd.command_id,
            code=P.NackCode.UNKNOWN_SESSION,
            reason="this rig is not running that session",
        )

    def _end_session(self, reason: P.EndReason, detail: str = "") -> None:
        """Stop the driver, flush its last samples, start the END_OF_STREAM handshake."""
        stream = self.active
        if stream is None:
            return
        try:
            self.driver.stop()
            self._read_driver(final=True)
            last = self._pending[-1] if self._pending else None
            if last is not None and last.key == stream.key and not last.sent:
                last.frame0 = P.patch_chunk(last.frame0, add_flags=P.ChunkFlags.LAST)
        except Exception as exc:
            log.exception("rig %s: driver failed while stopping", self.config.rig_id)
            reason, detail = P.EndReason.ERROR, f"{type(exc).__name__}: {exc}"
        self.active = None
        self.active_ctx = None
        stream.ended = reason
        stream.end_detail = detail
        stream.eos_sent_at = -math.inf
        if self.state is not P.RigState.ERROR:
            self.state = P.RigState.STOPPING
        if self.registered:
            self._pump(time.monotonic())
            self._resend_eos(time.monotonic())
        self._send_status(f"session ended: {reason.value}")

    def _resend_eos(self, now: float) -> None:
        ended = [s for s in self.streams.values() if s.ended is not None]  # usually none
        for stream in ended:
            if now - stream.eos_sent_at < self.config.eos_retry_s:
                continue
            stream.eos_sent_at = now
            if self._send(
                P.EndOfStream(
                    session_id=stream.session_id,
                    last_seq=stream.last_seq,
                    reason=stream.ended,
                    rig_time=self.driver.clock(),
                    detail=stream.end_detail[:4096],
                )
            ):
                self.stats["eos_sent"] += 1

    def _on_eos_ack(self, msg: P.EndOfStreamAck) -> None:
        key = uuid.UUID(msg.session_id).bytes
        stream = self.streams.get(key)
        if stream is None or stream.ended is None:
            return
        self._on_data_ack(stream.session_id, msg.durable_seq)
        if msg.durable_seq < stream.last_seq:
            return  # not a complete acknowledgement: keep re-sending what is missing
        self.stats["eos_acked"] += 1
        self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        self.streams.pop(stream.key, None)
        if self.state is P.RigState.STOPPING and not any(
            s.ended is not None and not s.recovered for s in self.streams.values()
        ):
            self.state = P.RigState.IDLE
            self._send_status("idle")

    # ── driver → chunks ─────────────────────────────────────────────────────────────────
    def _read_driver(self, final: bool = False) -> None:
        stream = self.active
        if stream is None:
            return
        driver = self.driver
        try:
            for block in driver.read(driver.clock()):
                if block.poses.shape[0] <= self._max_chunk:
                    self._add_block(stream, block)
                else:
                    for part in block.split(self._max_chunk):
                        self._add_block(stream, part)
        except P.ProtocolError as exc:
            log.error("rig %s: driver produced an unsendable block: %s", self.config.rig_id, exc)
            if not final:
                self.state = P.RigState.ERROR
                self._end_session(P.EndReason.ERROR, str(exc))
            return
        except Exception as exc:
            if final:
                raise
            log.exception("rig %s: driver read failed", self.config.rig_id)
            self.state = P.RigState.ERROR
            self._end_session(P.EndReason.ERROR, f"{type(exc).__name__}: {exc}")
            return
        if final:
            return
        ctx = self.active_ctx
        over = (
            ctx is not None
            and ctx.duration_s is not None
            and stream.next_seq * self._period >= ctx.duration_s
        )
        if over or driver.finished:
            self._end_session(P.EndReason.FINISHED)

    def _add_block(self, stream: _Stream, block: SampleBlock) -> None:
        count = block.poses.shape[0]
        if count == 0:
            return
        handle = self.rig_handle or 1  # patched to the current handle when sent
        first = stream.next_seq
        valid = None if block.all_valid else block.valid
        if block.checked:  # the driver verified the values (SampleBlock docs)
            if stream.prefix_handle != handle:
                stream.prefix = P.chunk_prefix(handle, self.layout, stream.key)
                stream.prefix_handle = handle
            f0, f1 = P.encode_checked_chunk(
                stream.prefix, self.layout, first, block.rig_time_first, block.period,
                block.poses, block.analog, valid,
            )  # fmt: skip
        else:
            f0, f1 = P.encode_chunk(
                rig_handle=handle,
                layout=self.layout,
                session_id=stream.key,
                first_seq=first,
                rig_time_first=block.rig_time_first,
                period=block.period,
                poses=block.poses,
                analog=block.analog,
                valid=valid,
            )
        nbytes = len(f0) + len(f1)
        out = _Out(stream.key, first, first + count - 1, f0, f1, self._order, handle, nbytes)
        self._order += 1
        stream.next_seq = first + count
        self.stats["samples_produced"] += count
        self._last_valid = block.valid
        self._store(out)

    # ── the store: memory, then spool ─────────────────────────────────────────────────────
    def _store(self, out: _Out) -> None:
        if self.spool is not None and (
            self._spool_unread > 0 or self.mem_bytes + out.nbytes > self.config.memory_limit_bytes
        ):
            try:
                payload = _SPOOL_PREFIX.pack(len(out.frame0)) + out.frame0 + out.frame1
                self.spool.append(payload, SPOOL_KIND_CHUNK)
                self._spool_unread += 1
                self._spool_dirty = True
                self.stats["spilled"] += 1
                return
            except SpoolFullError as exc:
                self._blog(
                    "spool_full",
                    "rig %s: spool full, keeping data in memory: %s",
                    self.config.rig_id,
                    exc,
                    level=logging.ERROR,
                )
        elif self.spool is None and self.mem_bytes + out.nbytes > self.config.memory_limit_bytes:
            self._blog(
                "mem_over",
                "rig %s: %d bytes unacknowledged and no spool configured",
                self.config.rig_id,
                self.mem_bytes,
                level=logging.ERROR,
            )
        self._pending.append(out)
        self.mem_bytes += out.nbytes

    def _open_spool(self, directory: Path) -> None:
        self.spool = Spool(directory, max_bytes=self.config.spool_max_bytes)
        # Chunks left by a previous run of this agent: rebuild their streams (headers only).
        for rec in self.spool.records():
            self._spool_unread += 1
            try:
                h = P.parse_chunk_header(self._record_frames(rec)[0])
            except P.ProtocolError:
                continue
            stream = self.streams.get(h.session)
            if stream is None:
                # Its driver is gone with the previous process: the stream is over (reason
                # "error"); END_OF_STREAM goes out once re-registered, like for any ended stream.
                stream = _Stream(
                    session_id=str(h.session_id),
                    key=h.session,
                    recovered=True,
                    ended=P.EndReason.ERROR,
                    end_detail="rig agent restarted; data recovered from its spool",
                )
                self.streams[h.session] = stream
            stream.next_seq = max(stream.next_seq, h.last_seq + 1)
        if self._spool_unread:
            log.warning(
                "rig %s: %d unacknowledged chunks found in the spool; they will be re-sent",
                self.config.rig_id,
                self._spool_unread,
            )

    @staticmethod
    def _record_frames(rec: SpoolRecord) -> tuple[bytes, bytes]:
        (n0,) = _SPOOL_PREFIX.unpack_from(rec.payload, 0)
        start = _SPOOL_PREFIX.size
        return rec.payload[start : start + n0], rec.payload[start + n0 :]

    def _next_from_spool(self) -> _Out | None:
        spool = self.spool
        if spool is None or self._spool_unread <= 0:
            return None
        for _attempt in range(2):
            if self._spool_iter is None:
                self._spool_iter = spool.records(start_after=self._spool_last_read)
            rec = next(self._spool_iter, None)
            if rec is not None:
                break
            self._spool_iter = None
        else:
            self._spool_unread = 0
            return None
        self._spool_unread -= 1
        self._spool_last_read = rec.id
        self._spool_ids.append(rec.id)
        self.stats["spool_read"] += 1
        f0, f1 = self._record_frames(rec)
        try:
            h = P.parse_chunk_header(f0)
        except P.ProtocolError as exc:
            log.error(
                "rig %s: unreadable chunk in the spool (record %d): %s", self.config.rig_id, rec.id, exc
            )
            self._spool_done(rec.id)
            return self._next_from_spool()
        out = _Out(
            h.session,
            h.first_seq,
            h.last_seq,
            f0,
            f1,
            self._order,
            h.rig_handle,
            len(f0) + len(f1),
            spool_id=rec.id,
            sent=h.flags & _RESEND != 0,
        )
        self._order += 1
        self.mem_bytes += out.nbytes
        return out

    def _spool_done(self, record_id: int) -> None:
        """A spooled chunk is acknowledged (or moot): advance the consumed pointer in order."""
        self._spool_acked.add(record_id)
        upto = 0
        while self._spool_ids and self._spool_ids[0] in self._spool_acked:
            upto = self._spool_ids.popleft()
            self._spool_acked.discard(upto)
        if upto and self.spool is not None:
            self.spool.consume_upto(upto)

    def _free(self, out: _Out) -> None:
        self.mem_bytes -= out.nbytes
        if out.spool_id is not None:
            self._spool_done(out.spool_id)

    def _sync_spool(self, now: float) -> None:
        self._last_spool_sync = now
        self._spool_dirty = False
        if self.spool is not None:
            try:
                self.spool.sync()
            except SpoolError as exc:
                self._blog("spool_sync", "rig %s: spool sync failed: %s", self.config.rig_id, exc)

    def _persist_memory(self) -> None:
        """On close: write chunks only held in memory to the spool so a restart re-sends them."""
        spool = self.spool
        if spool is None:
            return
        self._requeue_inflight()
        kept = 0
        for out in self._pending:
            if out.spool_id is not None:
                continue  # already on disk (and not consumed)
            stream = self.streams.get(out.key)
            if stream is None or out.last_seq <= stream.durable_seq:
                continue
            spool.append(_SPOOL_PREFIX.pack(len(out.frame0)) + out.frame0 + out.frame1, SPOOL_KIND_CHUNK)
            kept += 1
        self._pending.clear()
        spool.sync()
        if kept:
            log.warning(
                "rig %s: %d unacknowledged chunks written to the spool at exit", self.config.rig_id, kept
            )

    # ── sending data ──────────────────────────────────────────────────────────────────────
    def _pump(self, now: float) -> None:
        """Send queued chunks while the credit window allows."""
        sock = self.data
        if sock is None:
            return
        handle = self.rig_handle
        pending = self._pending
        stats = self.stats
        while True:
            if self.inflight_chunks >= self.max_inflight_chunks:
                stats["window_full"] += 1
                return
            if pending:
                out: _Out | None = pending.popleft()
            elif self._spool_unread <= 0:
                return
            elif self.inflight_chunks and self.mem_bytes >= self.config.memory_limit_bytes:
                return  # chunks read back from the spool count against the memory bound too
            else:
                out = self._next_from_spool()
            if out is None:
                return
            stream = self.streams.get(out.key)
            if stream is None or out.last_seq <= stream.durable_seq:
                self._free(out)  # acknowledged meanwhile (or session forgotten): nothing to send
                continue
            if pending and out.spool_id is None and self.config.coalesce:
                out = self._coalesce(out)
            if self.inflight_chunks and self.inflight_bytes + out.nbytes > self.max_inflight_bytes:
                pending.appendleft(out)
                stats["window_full"] += 1
                return
            f0 = out.frame0
            if out.sent or out.handle != handle:
                f0 = P.patch_chunk(f0, rig_handle=handle, add_flags=_RESEND if out.sent else 0)
                out.frame0 = f0
                out.handle = handle
            try:
                _zsend(sock, f0, _SNDMORE_NOBLOCK)
                _zsend(sock, out.frame1, _NOBLOCK)
            except zmq.Again:
                stats["eagain"] += 1
                pending.appendleft(out)
                return
            if out.sent:
                stats["chunks_resent"] += 1
            out.sent = True
            out.sent_at = now
            inflight = stream.inflight
            if not inflight:
                stream.last_progress = now
            inflight.append(out)
            self.inflight_chunks += 1
            self.inflight_bytes += out.nbytes
            stats["chunks_sent"] += 1
            stats["samples_sent"] += out.last_seq - out.first_seq + 1

    def _coalesce(self, out: _Out) -> _Out:
        """Join queued contiguous chunks behind ``out`` into one of at most 100 ms.

        Only happens with a backlog (re-sending after a reconnect, catching up after a stall):
        in steady state the queue is empty and chunks keep their 10-30 ms. Fewer, larger
        messages cost the rig and the controller less per sample (docs/protocol.md §20).
        """
        pending = self._pending
        while pending:
            nxt = pending[0]
            if nxt.key != out.key or nxt.spool_id is not None or nxt.handle != out.handle:
                break
            merged = P.merge_chunks(
                (out.frame0, out.frame1), (nxt.frame0, nxt.frame1), self.layout, self._max_chunk
            )
            if merged is None:
                break
            pending.popleft()
            f0, f1 = merged
            joined = _Out(
                out.key, out.first_seq, nxt.last_seq, f0, f1, out.order, out.handle,
                len(f0) + len(f1), sent=out.sent or nxt.sent,
            )  # fmt: skip
            self.mem_bytes += joined.nbytes - out.nbytes - nxt.nbytes
            self.stats["coalesced"] += 1
            out = joined
        return out

    def _on_data_ack(self, session_id: str, durable_seq: int) -> None:
        self.stats["acks"] += 1
        key = self._keys.get(session_id)
        if key is None:
            try:
                key = uuid.UUID(session_id).bytes
            except ValueError:
                return
            if len(self._keys) > 1024:
                self._keys.clear()
            self._keys[session_id] = key
        stream = self.streams.get(key)
        if stream is None or durable_seq <= stream.durable_seq:
            return
        stream.durable_seq = durable_seq
        stream.last_progress = time.monotonic()
        inflight = stream.inflight
        while inflight and inflight[0].last_seq <= durable_seq:
            out = inflight.popleft()
            self.inflight_chunks -= 1
            self.inflight_bytes -= out.nbytes
            if out.spool_id is None:
                self.mem_bytes -= out.nbytes  # `_free`'s usual case
            else:
                self._free(out)

    def _on_data_nack(self, msg: P.DataNack) -> None:
        self.stats["data_nacks"] += 1
        self._blog(
            f"dnack:{msg.code}",
            "rig %s: controller refused chunk %s/%d+%d: %s %s",
            self.config.rig_id,
            msg.session_id,
            msg.first_seq,
            msg.count,
            msg.code,
            msg.reason,
            level=logging.ERROR,
        )
        stream = self.streams.get(uuid.UUID(msg.session_id).bytes)
        if stream is None:
            return
        for out in list(stream.inflight):
            if out.first_seq == msg.first_seq:
                stream.inflight.remove(out)
                self.inflight_chunks -= 1
                self.inflight_bytes -= out.nbytes
                self._free(out)
                break

    def _check_ack_timeouts(self, now: float) -> None:
        """Go-back-N: a session whose oldest in-flight chunk waits too long is re-sent."""
        timeout = self.config.ack_timeout_s
        for stream in self.streams.values():
            if stream.inflight and now - stream.last_progress > timeout:
                self._blog(
                    "ack_timeout",
                    "rig %s: no DATA_ACK progress for %.1f s on %s; re-sending",
                    self.config.rig_id,
                    now - stream.last_progress,
                    stream.session_id,
                )
                back = list(stream.inflight)
                stream.inflight.clear()
                self.inflight_chunks -= len(back)
                self.inflight_bytes -= sum(o.nbytes for o in back)
                self._pending.extendleft(reversed(back))
                stream.last_progress = now

    # ── cues ──────────────────────────────────────────────────────────────────────────────
    def _on_cue(self, cue: P.Cue, rx_rig_time: float) -> None:
        self.stats["cues"] += 1
        if cue.ref_rig_time is not None:
            self.cue_latencies.append(rx_rig_time - cue.ref_rig_time)
        try:
            self.driver.on_cue(cue)
        except Exception:
            log.exception("rig %s: driver failed to show a cue", self.config.rig_id)


def _reachable(endpoint: str, control: str) -> str:
    """A bind-style endpoint (``tcp://*:P``, ``tcp://0.0.0.0:P``) made connectable: use the
    host we reach the controller's control socket at (docs/protocol.md §2)."""
    scheme, sep, rest = endpoint.partition("://")
    host, colon, port = rest.rpartition(":")
    if scheme != "tcp" or not sep or not colon or host not in ("*", "0.0.0.0", "[::]", "::"):
        return endpoint
    control_host = control.partition("://")[2].rpartition(":")[0]
    return f"tcp://{control_host}:{port}"


# Agents ticked between two looks at the control sockets during a sweep (cue latency).
SWEEP_SERVICE_EVERY = 8
# Agents whose chunks are sent together, after their driver reads: back to back, most sends find
# ZeroMQ's I/O thread still awake instead of waking it (an eventfd write and a context switch
# each). Measured side by side at 2 x 60 rigs: 32 costs ~5 % less rig CPU per chunk than 8, 100
# (the whole sweep) no less than 32. A chunk waits for at most 31 other agents' reads (~1 ms).
SWEEP_SEND_EVERY = 32


@dataclass(slots=True)
class _GroupNotes:
    """Agents that need the group's attention, listed by the agents themselves."""

    sent: list[RigAgent] = field(default_factory=list)  # sent on the control socket
    replaced: list[RigAgent] = field(default_factory=list)  # replaced/closed the control socket


class AgentGroup:
    """Many rig agents served by one thread (load tests, demos, the fleet's workers).

    All agents are swept together once per chunk period (their driver reads share the same
    wake-up), and an agent whose control socket has input is handled and pumped at once, so a
    group of N rigs wakes ~1/chunk_s times a second plus once per burst of control messages,
    not N times. During a sweep the control sockets are looked at every `SWEEP_SERVICE_EVERY`
    agents, and the chunks of every `SWEEP_SEND_EVERY` agents are sent back to back after their
    driver reads: each send whose message finds ZeroMQ's I/O thread asleep wakes it (an eventfd
    write, a context switch on a busy machine); back to back, most sends find it awake.

    Waiting uses one ``epoll`` over the control sockets' ``ZMQ_FD`` descriptors, built once and
    changed only when an agent replaces its socket: ``zmq.Poller`` re-checks every socket on
    every call (~0.7 µs per socket, ~1000 calls a second with 100 rigs), epoll reports only the
    sockets that were signalled. ``ZMQ_FD`` only says "look at ``ZMQ_EVENTS``", and a send on
    the socket may swallow that signal, so agents that sent on their control socket are
    checked for input after every sweep and every batch (`RigAgent.control_sent`). Agents list
    themselves in the group's `_GroupNotes` when they send on or replace their control
    socket, so none of this scans all agents.
    """

    def __init__(
        self, agents: Sequence[RigAgent], *, freeze_gc: bool = False, send_every: int = SWEEP_SEND_EVERY
    ) -> None:
        self.agents = list(agents)
        self._stop = threading.Event()
        # agents whose chunks go out together (`SWEEP_SEND_EVERY`; len(agents): once per sweep,
        # ~3 % less CPU than 32 at 2 x 100 rigs, but a chunk then waits up to a whole sweep)
        self.send_every = max(1, send_every)
        # For a process whose main job is this group (fleet workers, `python -m devices.agent`):
        # gc.freeze() once the agents are open, so CPython's full collection (tens of ms with
        # numpy and pydantic loaded, every thread stopped) does not walk the start-up objects
        # again and delay a cue or a heartbeat; and the collector's thresholds raised to
        # `GROUP_GC_THRESHOLDS`.
        self.freeze_gc = freeze_gc

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        notes = _GroupNotes()
        for a in self.agents:
            a.group_notes = notes
            notes.replaced.append(a)
            a.open()
        if self.freeze_gc:
            gc.set_threshold(*GROUP_GC_THRESHOLDS)
            gc.collect()
            gc.freeze()
        period = max(0.001, min((a.config.chunk_s for a in self.agents), default=DEFAULT_CHUNK_S))
        ep = select.epoll()
        by_fd: dict[int, tuple[RigAgent, zmq.Socket[bytes]]] = {}
        fd_of: dict[int, int] = {}  # id(agent) -> its registered fd

        def resync() -> None:
            """(Re-)register the control sockets of agents that replaced theirs."""
            if not notes.replaced:
                return
            todo = dict.fromkeys(notes.replaced)  # once each, in order
            notes.replaced.clear()
            for a in todo:
                old = fd_of.pop(id(a), None)
                if old is not None:
                    del by_fd[old]
                    with contextlib.suppress(OSError):  # closed: epoll dropped it
                        ep.unregister(old)
                sock = a.control
                if sock is not None:
                    fd = cast(int, sock.getsockopt(zmq.FD))
                    by_fd[fd] = (a, sock)
                    fd_of[id(a)] = fd
                    ep.register(fd, select.EPOLLIN)
                    a.control_sent = True  # look at it once: input may already be waiting
                    notes.sent.append(a)

        def serve(agent: RigAgent, signalled: bool = False) -> None:
            agent.control_sent = False
            agent.handle_control(signalled)
            agent.pump()  # send what the acks made room for

        def recheck() -> None:
            """Agents that sent on their control socket: handle input whose signal a send took."""
            if not notes.sent:
                return
            sent = notes.sent[:]
            notes.sent.clear()
            for a in sent:
                if a.control is None:
                    a.control_sent = False  # nothing to look at; a new socket is resynced
                elif a.control_sent:
                    serve(a)

        def service(timeout: float) -> None:
            """Wait up to `timeout` for control input and handle it."""
            try:
                events = ep.poll(timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; belt and braces
                return
            for fd, _ in events:
                entry = by_fd.get(fd)
                if entry is not None and entry[0].control is entry[1]:
                    serve(entry[0], signalled=True)
            if events:
                resync()
                recheck()

        agents = self.agents
        n_agents = len(agents)
        send_every = self.send_every
        resync()
        next_sweep = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_sweep:
                    sent = 0
                    for i, a in enumerate(agents, 1):
                        a.tick_due(now, pump=False)
                        if i % send_every == 0 or i == n_agents:
                            for b in agents[sent:i]:
                                b.pump_due(now)
                            sent = i
                        if i % SWEEP_SERVICE_EVERY == 0 or i == n_agents:
                            # A cue that arrives mid-sweep waits for a few agents' ticks, not
                            # the whole sweep (a sweep of 100 rigs takes ms).
                            service(0.0)
                    next_sweep = now + period
                    resync()
                    recheck()
                service(max(0.0, next_sweep - time.monotonic()))
        finally:
            ep.close()
            for a in self.agents:
                a.close()
                a.group_notes = None


# ── process entry point ─────────────────────────────────────────────────────────────────────


def _parse_trackers(text: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split(","):
        name, _, role = item.strip().partition(":")
        out.append((name, role or "other"))
    return out


def _make_driver(args: argparse.Namespace, index: int) -> PoseSource:
    if args.driver == "minimal":
        return MinimalDriver(
            trackers=_parse_trackers(args.trackers),
            analog=[a for a in args.analog.split(",") if a],
            rate_hz=args.rate,
            seed=args.seed + index,
            loss_every=args.loss_every,
        )
    module_name, _, attr = args.driver.partition(":")
    factory = getattr(importlib.import_module(module_name), attr or "make_driver")
    driver: PoseSource = factory(rig_index=index, seed=args.seed + index)
    return driver


def _read_key(path: str | None) -> tuple[bytes | None, bytes | None]:
    """(public, secret) from a ZeroMQ certificate file (``labctl keys generate`` writes them)."""
    if not path:
        return None, None
    public, secret = zmq.auth.load_certificate(path)
    return public, secret


def _server_key(value: str | None) -> bytes | None:
    """The controller's public key: Z85 text (40 characters) or a certificate file holding it."""
    if value is None:
        return None
    if len(value) == 40 and not Path(value).exists():
        return value.encode()
    public, _ = zmq.auth.load_certificate(value)
    return public


def _attach_key_values(argv: Sequence[str]) -> list[str]:
    """``--curve-server-key KEY`` → ``--curve-server-key=KEY``.

    Z85 text may start with '-', which argparse would take for an option (1 key in 85).
    """
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        if items[i] == "--curve-server-key" and i + 1 < len(items):
            out.append(f"--curve-server-key={items[i + 1]}")
            i += 2
        else:
            out.append(items[i])
            i += 1
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m devices.agent``."""
    ap = argparse.ArgumentParser(prog="python -m devices.agent", description=__doc__.splitlines()[0])
    ap.add_argument("--controller", required=True, help="control endpoint, e.g. tcp://127.0.0.1:5555")
    ap.add_argument("--rig-id", required=True, help="rig id; with --count N a prefix: ID-000 ...")
    ap.add_argument("--count", type=int, default=1, help="run this many rigs in this process")
    ap.add_argument("--site-id", default="")
    ap.add_argument("--data", default=None, help="data endpoint (default: from WELCOME / port+1)")
    ap.add_argument("--driver", default="minimal", help="'minimal' or module:factory(rig_index, seed)")
    ap.add_argument("--trackers", default="tool:tool,headset:headset,off_hand:off_hand")
    ap.add_argument("--analog", default="trigger")
    ap.add_argument("--rate", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss-every", type=int, default=0, help="minimal driver: mark tracking loss")
    ap.add_argument("--chunk-ms", type=float, default=DEFAULT_CHUNK_S * 1000)
    ap.add_argument("--memory-limit", type=int, default=DEFAULT_MEMORY_LIMIT, help="bytes")
    ap.add_argument("--spool-dir", default=None, help="spill directory (per rig: DIR/RIG_ID)")
    ap.add_argument("--spool-max-bytes", type=int, default=None)
    ap.add_argument("--curve-server-key", default=None, help="controller public key: Z85 or .key file")
    ap.add_argument("--curve-cert", default=None, help="rig key file (zmq.auth format, with secret)")
    ap.add_argument("--stats-every", type=float, default=0.0, help="print stats JSON every N s")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    return ap.parse_args(_attach_key_values(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devices.agent``: run one rig (or ``--count`` rigs in one process)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    public, secret = _read_key(args.curve_cert)
    agents = []
    ctx: zmq.Context[Any] = zmq.Context.instance()
    for i in range(args.count):
        rig_id = args.rig_id if args.count == 1 else f"{args.rig_id}-{i:03d}"
        cfg = AgentConfig(
            controller=args.controller,
            rig_id=rig_id,
            site_id=args.site_id,
            data_endpoint=args.data,
            chunk_s=args.chunk_ms / 1000.0,
            memory_limit_bytes=args.memory_limit,
            spool_dir=None if args.spool_dir is None else Path(args.spool_dir) / rig_id,
            spool_max_bytes=args.spool_max_bytes,
            curve_server_key=_server_key(args.curve_server_key),
            curve_public_key=public,
            curve_secret_key=secret,
        )
        agents.append(RigAgent(cfg, _make_driver(args, i), ctx))
    group = AgentGroup(agents, freeze_gc=True)

    def _on_signal(signum: int, _frame: object) -> None:
        group.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.stats_every > 0:
        import json

        def _report() -> None:
            while not group._stop.wait(args.stats_every):
                total: dict[str, int] = {}
                for a in agents:
                    for k, v in a.stats.items():
                        total[k] = total.get(k, 0) + v
                print(json.dumps({"pid": os.getpid(), "rigs": len(agents), **total}), flush=True)

        threading.Thread(target=_report, daemon=True).start()
    group.run()
    rejected = [a for a in agents if a.rejected is not None]
    return 2 if rejected and len(rejected) == len(agents) else 0


if __name__ == "__main__":
    sys.exit(main())
