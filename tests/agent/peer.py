"""A small test controller (ROUTER for control, PULL for data) that speaks the protocol.

It is deliberately simple and strict — what docs/protocol.md asks of a controller, nothing
more — so agent tests exercise the agent, not the real controller (which has its own tests).
Its "durable store" is a dict that survives `restart()` (like a spool would); what was received
but not yet "durable" is lost on restart, as in a controller crash.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from lab_controller import protocol as P


@dataclass
class SessionData:
    """Samples received for one session, by sequence number."""

    poses: dict[int, np.ndarray] = field(default_factory=dict)
    analog: dict[int, np.ndarray] = field(default_factory=dict)
    valid: dict[int, np.ndarray] = field(default_factory=dict)
    rig_time: dict[int, float] = field(default_factory=dict)
    durable: int = -1  # contiguous prefix that is "durable"
    duplicates: int = 0
    eos: P.EndOfStream | None = None
    eos_acked: bool = False
    resent_chunks: int = 0

    def contiguous(self) -> int:
        d = self.durable
        while d + 1 in self.poses:
            d += 1
        return d


@dataclass
class RigEntry:
    identity: bytes
    hello: P.Hello
    layout: P.ChannelLayout
    handle: int
    last_seen: float


class PeerController:
    """Run with `start()` (a thread); all socket use happens under one lock."""

    def __init__(
        self,
        *,
        heartbeat_s: float = 0.2,
        max_inflight_chunks: int = P.DEFAULT_MAX_INFLIGHT_CHUNKS,
        ack_delay_s: float = 0.0,
    ) -> None:
        self.ctx = zmq.Context()
        self.heartbeat_s = heartbeat_s
        self.max_inflight_chunks = max_inflight_chunks
        self.ack_delay_s = ack_delay_s
        self.acks_enabled = True
        self.lock = threading.RLock()
        self.sessions: dict[str, SessionData] = defaultdict(SessionData)
        self.rigs: dict[str, RigEntry] = {}
        self.by_handle: dict[int, str] = {}
        self.replies: list[tuple[str, Any]] = []  # (rig_id, message) of everything rigs sent
        self.bad: list[P.ProtocolError] = []
        self.chunks_received = 0
        self.hellos = 0
        self.controller_id = str(uuid.uuid4())
        self._next_handle = 100
        self._session_rig: dict[str, str] = {}  # session id -> rig id (survives restart)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.control: zmq.Socket[bytes] | None = None
        self.data: zmq.Socket[bytes] | None = None
        self.port = 0
        self.data_port = 0
        self._bind()

    # ── lifecycle ──────────────────────────────────────────────────────────────────────────
    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def data_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.data_port}"

    def _bind(self) -> None:
        self.control = self.ctx.socket(zmq.ROUTER)
        self.data = self.ctx.socket(zmq.PULL)
        for s in (self.control, self.data):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES)
        self.control.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if self.port:
            self.control.bind(self.endpoint)
            self.data.bind(self.data_endpoint)
        else:
            self.port = self.control.bind_to_random_port("tcp://127.0.0.1")
            self.data_port = self.data.bind_to_random_port("tcp://127.0.0.1")

    def start(self) -> PeerController:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="test-controller", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the loop and unbind; the durable store (``sessions``) is kept."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self.lock:
            for s in (self.control, self.data):
                if s is not None:
                    s.close(0)
            self.control = self.data = None

    def restart(self, down_s: float = 0.0) -> None:
        """Simulate a controller crash + restart: forget rigs and non-durable data, new id."""
        self.close()
        time.sleep(down_s)
        with self.lock:
            for sd in self.sessions.values():
                for seq in [s for s in sd.poses if s > sd.durable]:
                    del sd.poses[seq], sd.analog[seq], sd.valid[seq], sd.rig_time[seq]
                sd.eos = None
                sd.eos_acked = False
            self.rigs.clear()
            self.by_handle.clear()
            self.controller_id = str(uuid.uuid4())
        for _ in range(50):  # the port may linger briefly in TIME_WAIT-free loopback: retry
            try:
                self._bind()
                break
            except zmq.ZMQError:
                time.sleep(0.05)
        self.start()

    def terminate(self) -> None:
        self.close()
        self.ctx.term()

    # ── test helpers ─────────────────────────────────────────────────────────────────────────
    def send(self, rig_id: str, msg: Any) -> None:
        with self.lock:
            rig = self.rigs[rig_id]
            self._send(rig.identity, msg)

    def send_raw(self, rig_id: str, frames: list[bytes]) -> None:
        with self.lock:
            assert self.control is not None
            self.control.send_multipart([self.rigs[rig_id].identity, *frames])

    def wait(self, pred: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if pred():
                    return True
            time.sleep(0.01)
        with self.lock:
            return pred()

    def command(self, rig_id: str, msg: Any, timeout: float = 5.0) -> Any:
        """Send a command and wait for its ACK/NACK."""
        self.send(rig_id, msg)
        found: list[Any] = []

        def answered() -> bool:
            for rid, m in self.replies:
                if rid == rig_id and isinstance(m, P.Ack | P.Nack) and m.command_id == msg.command_id:
                    found.append(m)
                    return True
            return False

        assert self.wait(answered, timeout), f"no answer to {msg.type}"
        return found[0]

    def start_session(self, rig_id: str, **params: Any) -> str:
        sid = str(uuid.uuid4())
        with self.lock:
            self._session_rig[sid] = rig_id
        ans = self.command(
            rig_id,
            P.Start(
                command_id=str(uuid.uuid4()),
                session_id=sid,
                exercise_id="ex",
                trainee="t-1",
                params=params,
            ),
        )
        assert isinstance(ans, P.Ack), ans
        return sid

    def messages(self, rig_id: str, kind: type) -> list[Any]:
        with self.lock:
            return [m for r, m in self.replies if r == rig_id and isinstance(m, kind)]

    def stored(self, sid: str) -> SessionData:
        with self.lock:
            return self.sessions[sid]

    # ── the loop ──────────────────────────────────────────────────────────────────────────
    def _send(self, identity: bytes, msg: Any) -> None:
        assert self.control is not None
        f0, f1 = P.encode_control(msg)
        self.control.send(identity, zmq.SNDMORE)
        self.control.send(f0, zmq.SNDMORE)
        self.control.send(f1)

    def _run(self) -> None:
        poller = zmq.Poller()
        with self.lock:
            assert self.control is not None and self.data is not None
            poller.register(self.control, zmq.POLLIN)
            poller.register(self.data, zmq.POLLIN)
        last_hb = 0.0
        pending_acks: list[tuple[float, str, int]] = []  # (due, session, last seq of chunk)
        while not self._stop.is_set():
            events = dict(poller.poll(10))
            with self.lock:
                if self.control is None or self.data is None:
                    return
                now = time.monotonic()
                if self.control in events:
                    while True:
                        try:
                            frames = self.control.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_control(frames[0], frames[1:])
                if self.data in events:
                    while True:
                        try:
                            frames = self.data.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        got = self._on_chunk(frames)
                        if got is not None:
                            pending_acks.append((now + self.ack_delay_s, *got))
                if now - last_hb >= self.heartbeat_s:
                    last_hb = now
                    for rig in self.rigs.values():
                        self._send(
                            rig.identity,
                            P.Heartbeat(sender_time=time.time(), controller_id=self.controller_id),
                        )
                if self.acks_enabled:
                    due: dict[str, int] = {}
                    for t, sid, last in pending_acks:
                        if t <= now:
                            due[sid] = max(due.get(sid, -1), last)
                    pending_acks = [a for a in pending_acks if a[0] > now]
                    for sid, upto in due.items():
                        self._ack(sid, upto)

    def _ack(self, sid: str, upto: int | None = None) -> None:
        """Make samples up to ``upto`` (all received, if None) durable and acknowledge."""
        sd = self.sessions[sid]
        sd.durable = max(sd.durable, min(sd.contiguous(), upto if upto is not None else 2**63))
        rig = self._session_rig.get(sid)
        if rig is None or rig not in self.rigs:
            return
        ident = self.rigs[rig].identity
        self._send(ident, P.DataAck(session_id=sid, durable_seq=sd.durable))
        if sd.eos is not None and not sd.eos_acked and sd.durable >= sd.eos.last_seq:
            sd.eos_acked = True
            self._send(ident, P.EndOfStreamAck(session_id=sid, durable_seq=sd.durable))

    def _on_control(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            msg = P.decode_control(frames)
        except P.ProtocolError as exc:
            self.bad.append(exc)
            self._send(identity, P.error_for(exc))
            return
        rig_id = next((r.hello.rig_id for r in self.rigs.values() if r.identity == identity), None)
        if isinstance(msg, P.Hello):
            self.hellos += 1
            layout = P.layout_from_hello(msg)
            old = self.rigs.get(msg.rig_id)
            handle = old.handle if old is not None else self._next_handle
            if old is None:
                self._next_handle += 1
            self.rigs[msg.rig_id] = RigEntry(identity, msg, layout, handle, time.monotonic())
            self.by_handle[handle] = msg.rig_id
            resume = []
            for sid, rig in self._session_rig.items():
                if rig == msg.rig_id:
                    sd = self.sessions[sid]
                    resume.append(P.ResumeEntry(session_id=sid, durable_seq=sd.durable))
            for b in msg.backlog:
                self._session_rig.setdefault(b.session_id, msg.rig_id)
            if msg.active_session is not None:
                self._session_rig.setdefault(msg.active_session.session_id, msg.rig_id)
            self._send(
                identity,
                P.Welcome(
                    rig_id=msg.rig_id,
                    rig_handle=handle,
                    controller_id=self.controller_id,
                    server_time=time.time(),
                    heartbeat_interval_s=self.heartbeat_s,
                    max_inflight_chunks=self.max_inflight_chunks,
                    data_endpoint=self.data_endpoint,
                    resume=resume,
                ),
            )
            self.replies.append((msg.rig_id, msg))
            return
        if rig_id is None:
            self._send(identity, P.Error(code=P.ErrorKind.UNKNOWN_RIG, detail="say HELLO first"))
            return
        self.rigs[rig_id].last_seen = time.monotonic()
        self.replies.append((rig_id, msg))
        if isinstance(msg, P.EndOfStream):
            sd = self.sessions[msg.session_id]
            sd.eos = msg
            self._ack(msg.session_id, sd.durable)

    def _on_chunk(self, frames: list[bytes]) -> tuple[str, int] | None:
        try:
            header = P.parse_chunk_header(frames[0])
            rig_id = self.by_handle.get(header.rig_handle)
            if rig_id is None:
                raise P.ProtocolError(P.ErrorKind.UNKNOWN_RIG, f"handle {header.rig_handle}")
            chunk = P.decode_chunk(frames, self.rigs[rig_id].layout, header)
        except P.ProtocolError as exc:
            self.bad.append(exc)
            return None
        self.chunks_received += 1
        sid = str(header.session_id)
        self._session_rig.setdefault(sid, rig_id)
        sd = self.sessions[sid]
        if header.flags & P.ChunkFlags.RESEND:
            sd.resent_chunks += 1
        times = chunk.rig_times()
        for i in range(chunk.count):
            seq = header.first_seq + i
            if seq in sd.poses:
                sd.duplicates += 1
                continue
            sd.poses[seq] = chunk.poses[i].copy()
            sd.analog[seq] = chunk.analog[i].copy()
            sd.valid[seq] = chunk.valid[i].copy()
            sd.rig_time[seq] = float(times[i])
        return sid, header.last_seq
