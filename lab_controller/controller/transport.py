"""The only module that owns ZeroMQ sockets: the controller's three sockets and the API client.

Controller side: a ROUTER for rig control (`control_endpoint`), a PULL (or ROUTER) for sample
chunks (`data_endpoint`), a ROUTER for the instructor API (`api_endpoint`), and a self-pipe the
sink and observer threads use to wake the loop. Frames are sent with two `send` calls and
SNDMORE, not `send_multipart` (performance.md: ~2.5x faster at 512 B).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import zmq

from lab_controller import protocol as P
from lab_controller.controller.config import ControllerConfig
from lab_controller.controller.security import (
    INSTRUCTOR_DOMAIN,
    RIG_DOMAIN,
    ClientSecurity,
    ServerSecurity,
    check_plain_allowed,
)

log = logging.getLogger(__name__)

Source = Literal["control", "data", "api", "wake"]

# pyzmq's Cython send/recv/get without the Python wrapper of `zmq.Socket` (~1 µs per call; the
# loop makes ~4 per chunk, 10 000 chunks/s at 200 rigs), with the flags as plain ints (pyzmq's
# constants are enum flags and `int | Flag` runs Python enum code).
_zsend = zmq.backend.Socket.send
_zrecv = zmq.backend.Socket.recv
_zget = zmq.backend.Socket.get
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)

# A ROUTER message beyond identity + 2 frames is malformed; we read at most this many frames
# and count the rest, so a peer cannot make us buffer an unbounded multipart message.
MAX_FRAMES = 8


@dataclass(slots=True)
class Incoming:
    """One received message: its source, the routing envelope and the protocol frames."""

    source: Source
    envelope: list[bytes]  # ROUTER identity (+ empty delimiter for REQ clients); [] for PULL
    frames: list[bytes]
    truncated: bool = False  # more than MAX_FRAMES frames arrived (the rest was discarded)
    user_id: str | None = None  # ZAP User-Id (the allow-listed key's name) under CurveZMQ


class Waker:
    """A self-pipe: other threads call `wake()`; the poller sees the read end readable."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    @property
    def fd(self) -> int:
        return self._r

    def wake(self) -> None:
        try:
            os.write(self._w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is already due to wake
        except OSError:
            pass  # closed during shutdown

    def drain(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _server_socket(
    ctx: zmq.Context[zmq.Socket[bytes]],
    kind: int,
    cfg: ControllerConfig,
    security: ServerSecurity | None,
    domain: str,
) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.maxmsgsize = P.MAX_MESSAGE_BYTES  # a larger frame is cut off by libzmq, not buffered
    sock.setsockopt(zmq.HEARTBEAT_IVL, cfg.zmtp_heartbeat_ivl_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, cfg.zmtp_heartbeat_timeout_ms)
    sock.setsockopt(zmq.HEARTBEAT_TTL, cfg.zmtp_heartbeat_timeout_ms)
    if kind == zmq.ROUTER:
        # Unroutable sends raise EHOSTUNREACH instead of vanishing; a full pipe raises EAGAIN.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if security is not None:
        security.apply(sock, domain)
    return sock


def make_thread_realtime(priority: int) -> bool:
    """SCHED_RR at `priority` for the calling thread (children it forks start normal).

    False, with a warning, where the OS refuses (no CAP_SYS_NICE / RLIMIT_RTPRIO).
    """
    if not 1 <= priority <= 99:
        raise ValueError(f"realtime priority must be 1-99, got {priority}")
    try:
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except OSError as exc:
        log.warning("real-time scheduling (SCHED_RR %d) refused, running normally: %s",
                    priority, exc)
        return False
    return True


class ControllerSockets:
    """Binds, polls, receives and sends for the controller loop (one thread only).

    `realtime_priority`: give ZeroMQ's background threads (I/O, reaper) SCHED_RR at this
    priority. Only pass it once
    `make_thread_realtime` succeeded: libzmq aborts the process when the OS refuses.
    """

    def __init__(self, cfg: ControllerConfig, security: ServerSecurity | None = None,
                 realtime_priority: int | None = None) -> None:
        if security is None:
            check_plain_allowed(
                [cfg.control_endpoint, cfg.data_endpoint, cfg.api_endpoint],
                cfg.allow_plain_remote,
            )
        self.cfg = cfg
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        if realtime_priority is not None:  # before the first socket starts the I/O threads
            self.ctx.set(zmq.THREAD_SCHED_POLICY, os.SCHED_RR)
            self.ctx.set(zmq.THREAD_PRIORITY, realtime_priority)
        self.security = security
        self.waker = Waker()
        try:
            if security is not None:
                security.start(self.ctx)
            self.control = _server_socket(self.ctx, zmq.ROUTER, cfg, security, RIG_DOMAIN)
            data_kind = zmq.PULL if cfg.data_socket == "pull" else zmq.ROUTER
            self.data = _server_socket(self.ctx, data_kind, cfg, security, RIG_DOMAIN)
            self.data.rcvhwm = cfg.data_rcvhwm
            self.api = _server_socket(self.ctx, zmq.ROUTER, cfg, security, INSTRUCTOR_DOMAIN)
            self.control.bind(cfg.control_endpoint)
            self.data.bind(cfg.data_endpoint)
            self.api.bind(cfg.api_endpoint)
        except Exception:
            self.waker.close()
            if security is not None:
                security.stop()
            self.ctx.destroy(linger=0)
            raise
        self.endpoints = {
            "control": self.control.getsockopt_string(zmq.LAST_ENDPOINT),
            "data": self.data.getsockopt_string(zmq.LAST_ENDPOINT),
            "api": self.api.getsockopt_string(zmq.LAST_ENDPOINT),
        }
        self._poller_all = zmq.Poller()
        self._poller_nodata = zmq.Poller()
        for p in (self._poller_all, self._poller_nodata):
            p.register(self.control, zmq.POLLIN)
            p.register(self.api, zmq.POLLIN)
            p.register(self.waker.fd, zmq.POLLIN)
        self._poller_all.register(self.data, zmq.POLLIN)
        self.send_failures = 0

    def poll(self, timeout_s: float, read_data: bool) -> list[Incoming]:
        """Wait up to `timeout_s`, then drain ready sockets (data only if `read_data`)."""
        poller = self._poller_all if read_data else self._poller_nodata
        ready = dict(poller.poll(max(0, int(timeout_s * 1000))))
        out: list[Incoming] = []
        if self.waker.fd in ready:
            self.waker.drain()
            out.append(Incoming("wake", [], []))
        if self.control in ready:
            self._drain(self.control, "control", True, out)
        if self.api in ready:
            self._drain(self.api, "api", True, out)
        if read_data and self.data in ready:
            self._drain(self.data, "data", self.cfg.data_socket == "router", out,
                        self.cfg.data_drain_batch)
        return out

    def _drain(self, sock: zmq.Socket[bytes], source: Source, routed: bool,
               out: list[Incoming], limit: int | None = None) -> None:
        # Under CurveZMQ the ZAP User-Id (the key's name) comes with every message; the engine
        # checks it against the rig id on HELLO and on every chunk.
        want_user = self.security is not None
        for _ in range(self.cfg.drain_batch if limit is None else limit):
            user_id: str | None = None
            try:
                if want_user:
                    frame = sock.recv(zmq.NOBLOCK, copy=False)
                    first = frame.bytes
                    uid = frame.get("User-Id")
                    user_id = uid if isinstance(uid, str) else None
                else:
                    first = _zrecv(sock, _NOBLOCK)
            except zmq.Again:
                return
            frames = [first]
            truncated = False
            while _zget(sock, _RCVMORE):
                part = _zrecv(sock, 0)
                if len(frames) < MAX_FRAMES:
                    frames.append(part)
                else:
                    truncated = True
            envelope: list[bytes] = []
            if routed:
                envelope = frames[:1]
                frames = frames[1:]
                if source == "api" and len(frames) >= 1 and frames[0] == b"":
                    envelope.append(b"")  # REQ client: keep the delimiter for the reply
                    frames = frames[1:]
            out.append(Incoming(source, envelope, frames, truncated, user_id))

    def _send(self, sock: zmq.Socket[bytes], envelope: Sequence[bytes],
              frames: tuple[bytes, bytes]) -> bool:
        try:
            for part in envelope:
                _zsend(sock, part, _SNDMORE_NOBLOCK)
            _zsend(sock, frames[0], _SNDMORE_NOBLOCK)
            _zsend(sock, frames[1], _NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            # EHOSTUNREACH: the peer is gone; EAGAIN: its pipe is full (a hung peer). Either way
            # the message is not delivered and the caller's bookkeeping (command timeout, the
            # next cumulative DATA_ACK) covers it.
            if exc.errno not in (errno.EHOSTUNREACH, errno.EAGAIN, zmq.EHOSTUNREACH):
                log.warning("send failed: %s", exc)
            self.send_failures += 1
            return False

    def send_control(self, identity: bytes, frames: tuple[bytes, bytes]) -> bool:
        """Send one message to the rig connected as `identity`; False if undeliverable."""
        return self._send(self.control, (identity,), frames)

    def send_api(self, envelope: Sequence[bytes], frames: tuple[bytes, bytes]) -> bool:
        """Reply to an instructor client."""
        return self._send(self.api, envelope, frames)

    def send_data_reply(self, identity: bytes, frames: tuple[bytes, bytes]) -> bool:
        """Reply on the data socket (only when it is a ROUTER)."""
        if self.cfg.data_socket != "router":
            return False
        return self._send(self.data, (identity,), frames)

    def close(self) -> None:
        for sock in (self.control, self.data, self.api):
            sock.close(linger=0)
        self.waker.close()
        if self.security is not None:
            self.security.stop()
        self.ctx.term()


class ApiError(Exception):
    """The controller refused the request, or did not answer in time."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ApiClient:
    """Instructor side of the API: a DEALER with a timeout per request (REQ would wedge)."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_s: float = 10.0,
        security: ClientSecurity | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.linger = 0
        self._sock.maxmsgsize = P.MAX_MESSAGE_BYTES
        if security is not None:
            security.apply(self._sock)
        self._sock.connect(endpoint)

    def request(self, msg: P.ApiRequest, timeout_s: float | None = None) -> P.ApiReply:
        """Send `msg`, wait for the matching reply; raise `ApiError` on refusal or timeout."""
        rid = msg.request_id or uuid.uuid4().hex
        msg = msg.model_copy(update={"request_id": rid})
        f0, f1 = P.encode_control(msg)
        self._sock.send(b"", zmq.SNDMORE)
        self._sock.send(f0, zmq.SNDMORE)
        self._sock.send(f1)
        wait_ms = int(1000 * (self.timeout_s if timeout_s is None else timeout_s))
        while True:
            if not self._sock.poll(wait_ms):
                raise ApiError("timeout", f"no answer from the controller at {self.endpoint} "
                               f"within {wait_ms / 1000:.0f} s (is it running?)")
            frames = self._sock.recv_multipart()
            if frames and frames[0] == b"":
                frames = frames[1:]
            try:
                reply = P.decode_control(frames)
            except P.ProtocolError as exc:
                raise ApiError(exc.kind.value, f"unreadable reply: {exc}") from exc
            if isinstance(reply, P.Error):
                raise ApiError(reply.code.value, reply.detail)
            if not isinstance(reply, P.ApiReply):
                raise ApiError("unexpected", f"unexpected reply type {reply.type}")
            if reply.request_id != rid:
                continue  # a late reply to an earlier, timed-out request
            if not reply.ok:
                raise ApiError(reply.error_code or "error", reply.error or "request refused")
            return reply

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
