"""Test kit for the controller: a scripted rig peer and helpers.

`ScriptedRig` is a deliberately small, independent rig written from docs/protocol.md (not from
devices/agent.py), so controller tests do not depend on the agent and also check the spec is
implementable. It runs in a thread, or as a process via ``python controller_testkit.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from lab_controller import protocol as P
from lab_controller.controller import (
    ApiClient,
    Controller,
    ControllerConfig,
    SessionEvent,
    SpoolSink,
)

TRACKERS = [("torch", "tool"), ("hmd", "headset")]
ANALOG = ["trigger"]
LAYOUT = P.make_layout(TRACKERS, ANALOG)


@dataclass
class _Stored:
    first_seq: int
    poses: np.ndarray[Any, Any]
    analog: np.ndarray[Any, Any]
    rig_time: float
    session_id: str

    @property
    def last_seq(self) -> int:
        return self.first_seq + int(self.poses.shape[0]) - 1


class ScriptedRig:
    """A minimal conforming rig (docs/protocol.md §19) with knobs for tests."""

    def __init__(
        self,
        control_endpoint: str,
        rig_id: str,
        *,
        rate_hz: float = 120.0,
        samples_per_chunk: int = 3,
        heartbeat_s: float = 0.2,
        answer_time_sync: bool = True,
        trackers_valid: list[bool] | None = None,
        window: int | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,  # (public, secret, server public)
    ) -> None:
        self.control_endpoint = control_endpoint
        self.rig_id = rig_id
        self.rate_hz = rate_hz
        self.n = samples_per_chunk
        self.heartbeat_s = heartbeat_s
        self.answer_time_sync = answer_time_sync
        self.trackers_valid = trackers_valid
        self.window_override = window
        self.curve = curve
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.ctrl: zmq.Socket[bytes] | None = None
        self.data: zmq.Socket[bytes] | None = None
        self.handle = 0
        self.controller_id: str | None = None
        self.window = 256
        self.session_id: str | None = None
        self.exercise_id = ""
        self.next_seq = 0
        self.state = P.RigState.IDLE
        self.store: OrderedDict[tuple[str, int], _Stored] = OrderedDict()
        self.inflight: set[tuple[str, int]] = set()
        self.eos_pending: dict[str, P.EndOfStream] = {}
        self.answers: dict[str, P.Ack | P.Nack] = {}
        self.received: list[Any] = []
        self.cues: list[P.Cue] = []
        self.welcomes: list[P.Welcome] = []
        self.rejects: list[P.Reject] = []
        self.errors: list[P.Error] = []
        self.paused = False  # stop producing samples (e.g. to test backlog)
        self.hung = False  # stop answering and heartbeating (an application hang)
        self.ignore_commands = False  # never answer START/STOP/ABORT (command timeout tests)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_rx = time.monotonic()
        self._next_beat = 0.0
        self._next_hello = 0.0
        self._next_sample_t = 0.0
        self._hb_interval = heartbeat_s
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    # ── sockets ──
    def _open(self) -> None:
        self._close()
        self.ctrl = self.ctx.socket(zmq.DEALER)
        self.data = self.ctx.socket(zmq.PUSH)
        for s in (self.ctrl, self.data):
            s.linger = 0
            s.immediate = True
            if self.curve is not None:
                s.curve_publickey, s.curve_secretkey, s.curve_serverkey = self.curve
        self.ctrl.connect(self.control_endpoint)
        self.handle = 0
        self.inflight.clear()
        self._next_hello = 0.0
        self._last_rx = time.monotonic()

    def _close(self) -> None:
        for s in (self.ctrl, self.data):
            if s is not None:
                s.close(linger=0)
        self.ctrl = self.data = None

    def rig_time(self) -> float:
        return time.monotonic() - self.t0 + 1000.0

    def send(self, msg: Any) -> None:
        assert self.ctrl is not None
        f0, f1 = P.encode_control(msg)
        with contextlib.suppress(zmq.Again):
            self.ctrl.send(f0, zmq.SNDMORE | zmq.NOBLOCK)
            self.ctrl.send(f1, zmq.NOBLOCK)

    def send_raw(self, frames: list[bytes], data: bool = False) -> None:
        sock = self.data if data else self.ctrl
        assert sock is not None
        for i, f in enumerate(frames):
            sock.send(f, zmq.SNDMORE if i < len(frames) - 1 else 0)

    def hello(self) -> P.Hello:
        active = None
        if self.session_id is not None:
            active = P.ActiveSession(session_id=self.session_id, exercise_id=self.exercise_id,
                                     state=self.state, next_seq=self.next_seq)
        backlog: dict[str, list[_Stored]] = {}
        for st in self.store.values():
            backlog.setdefault(st.session_id, []).append(st)
        return P.Hello(
            rig_id=self.rig_id,
            trackers=[P.TrackerSpec(name=n, role=P.TrackerRole(r)) for n, r in TRACKERS],
            analog=ANALOG, rate_hz=self.rate_hz, layout_id=LAYOUT.layout_id,
            rig_time=self.rig_time(), capabilities=[P.Capability.CUES, P.Capability.TIME_SYNC],
            active_session=active,
            backlog=[P.BacklogEntry(session_id=sid, first_seq=v[0].first_seq,
                                    last_seq=v[-1].last_seq, chunks=len(v))
                     for sid, v in backlog.items()],
        )

    # ── lifecycle ──
    def start(self) -> ScriptedRig:
        self._open()
        self._thread = threading.Thread(target=self.run, daemon=True, name=f"rig-{self.rig_id}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._close()
        self.ctx.term()

    def wait(self, cond: Any, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.01)
        return False

    def run(self) -> None:
        if self.ctrl is None:
            self._open()
        while not self._stop.is_set():
            try:
                self._once()
            except zmq.ZMQError:
                if self._stop.is_set():
                    return
                raise

    def _once(self) -> None:
        assert self.ctrl is not None
        now = time.monotonic()
        if self.hung:
            time.sleep(0.01)
            return
        if self.handle == 0 and now >= self._next_hello:
            self.send(self.hello())
            self._next_hello = now + 0.5
        if self.handle and now - self._last_rx > 3 * self._hb_interval + 0.2:
            self._open()  # controller lost: reconnect and re-register
            return
        if self.ctrl.poll(5):
            frames = self.ctrl.recv_multipart()
            self._last_rx = time.monotonic()
            try:
                msg = P.decode_control(frames)
            except P.ProtocolError as exc:
                self.send(P.error_for(exc))
                return
            self._on(msg)
        now = time.monotonic()
        if self.handle and now >= self._next_beat:
            self._next_beat = now + self._hb_interval
            self.send(P.Heartbeat(sender_time=self.rig_time(), state=self.state,
                                  session_id=self.session_id, next_seq=self.next_seq,
                                  backlog_chunks=len(self.store),
                                  trackers_valid=self.trackers_valid or [True, True]))
            for eos in list(self.eos_pending.values()):
                self.send(eos)
        if self.state is P.RigState.RUNNING and not self.paused and now >= self._next_sample_t:
            self._produce()
            self._next_sample_t = now + self.n / self.rate_hz
        self._pump()

    def _produce(self) -> None:
        assert self.session_id is not None
        n, t = self.n, len(TRACKERS)
        seq0 = self.next_seq
        poses = np.zeros((n, t, 7), np.float32)
        poses[:, :, 0] = np.arange(seq0, seq0 + n, dtype=np.float32)[:, None]  # x = seq
        poses[:, :, 6] = 1.0
        analog = np.full((n, 1), 0.5, np.float32)
        self.store[(self.session_id, seq0)] = _Stored(seq0, poses, analog, self.rig_time(),
                                                      self.session_id)
        self.next_seq += n

    def _pump(self) -> None:
        """Send stored chunks not in flight, within the credit window."""
        if not self.handle or self.data is None:
            return
        window = self.window_override or self.window
        for key, st in self.store.items():
            if len(self.inflight) >= window:
                return
            if key in self.inflight:
                continue
            f0, f1 = P.encode_chunk(
                rig_handle=self.handle, layout=LAYOUT, session_id=uuid.UUID(st.session_id),
                first_seq=st.first_seq, rig_time_first=st.rig_time, period=1 / self.rate_hz,
                poses=st.poses, analog=st.analog)
            try:
                self.data.send(f0, zmq.SNDMORE | zmq.NOBLOCK)
                self.data.send(f1, zmq.NOBLOCK)
            except zmq.Again:
                return
            self.inflight.add(key)

    def _on(self, msg: Any) -> None:
        self.received.append(msg)
        if isinstance(msg, P.Welcome):
            self.welcomes.append(msg)
            self.handle = msg.rig_handle
            self.controller_id = msg.controller_id
            self.window = msg.max_inflight_chunks
            self._hb_interval = msg.heartbeat_interval_s
            assert self.data is not None
            if msg.data_endpoint:
                self.data.connect(msg.data_endpoint)
            for r in msg.resume:
                self._ack(r.session_id, r.durable_seq)
            self.inflight.clear()
            if not msg.active_session_ok and self.session_id is not None:
                self._end(P.EndReason.ABORTED)
        elif isinstance(msg, P.Reject):
            self.rejects.append(msg)
        elif isinstance(msg, P.Heartbeat):
            if msg.controller_id and self.controller_id and msg.controller_id != self.controller_id:
                self._open()
        elif isinstance(msg, P.TimeSync):
            if self.answer_time_sync:
                t1 = self.rig_time()
                self.send(P.TimeSyncReply(probe_id=msg.probe_id, t0=msg.t0, t1=t1,
                                          t2=self.rig_time()))
        elif isinstance(msg, P.Start | P.Stop | P.Abort) and self.ignore_commands:
            return
        elif isinstance(msg, P.Start):
            if msg.command_id in self.answers:
                self.send(self.answers[msg.command_id])
                return
            ans: P.Ack | P.Nack
            if self.session_id is not None:
                ans = P.Nack(command_id=msg.command_id, code=P.NackCode.BUSY)
            else:
                self.session_id = msg.session_id
                self.exercise_id = msg.exercise_id
                self.next_seq = 0
                self.state = P.RigState.RUNNING
                ans = P.Ack(command_id=msg.command_id, rig_time=self.rig_time())
            self.answers[msg.command_id] = ans
            self.send(ans)
        elif isinstance(msg, P.Stop | P.Abort):
            if msg.session_id != self.session_id:
                ans = P.Nack(command_id=msg.command_id, code=P.NackCode.UNKNOWN_SESSION)
            else:
                ans = P.Ack(command_id=msg.command_id, rig_time=self.rig_time())
            self.send(ans)
            if msg.session_id == self.session_id:
                self._end(P.EndReason.STOPPED if isinstance(msg, P.Stop) else P.EndReason.ABORTED)
        elif isinstance(msg, P.DataAck):
            self._ack(msg.session_id, msg.durable_seq)
        elif isinstance(msg, P.EndOfStreamAck):
            self.eos_pending.pop(msg.session_id, None)
            self._ack(msg.session_id, msg.durable_seq)  # the rig forgets the session (§11)
        elif isinstance(msg, P.Cue):
            self.cues.append(msg)
        elif isinstance(msg, P.Error):
            self.errors.append(msg)
            if msg.code is P.ErrorKind.UNKNOWN_RIG:
                self.handle = 0
                self._next_hello = 0.0

    def _end(self, reason: P.EndReason) -> None:
        assert self.session_id is not None
        eos = P.EndOfStream(session_id=self.session_id, last_seq=self.next_seq - 1,
                            reason=reason, rig_time=self.rig_time())
        self.eos_pending[self.session_id] = eos
        self.send(eos)
        self.session_id = None
        self.state = P.RigState.IDLE

    def _ack(self, sid: str, durable: int) -> None:
        for key in [k for k, st in self.store.items()
                    if st.session_id == sid and st.last_seq <= durable]:
            del self.store[key]
            self.inflight.discard(key)




# ── process helpers (real agents, a real controller process) ────────────────────────────────


REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def chunk_frames(handle: int, sid: uuid.UUID, first: int, n: int, lost: bool = False,
                 t0: float = 10.0, period: float = 1 / 120) -> tuple[bytes, bytes]:
    """The frames of a LAYOUT chunk whose x coordinate is the sample's sequence number;
    ``lost``: tracker 1 of the first sample is marked lost (a validity mask is sent)."""
    poses = np.zeros((n, 2, 7), np.float32)
    poses[:, :, 0] = np.arange(first, first + n)[:, None]
    poses[:, :, 6] = 1
    valid = None
    if lost:
        valid = np.ones((n, 2), bool)
        valid[0, 1] = False
    return P.encode_chunk(rig_handle=handle, layout=LAYOUT, session_id=sid, first_seq=first,
                          rig_time_first=t0 + first * period, period=period, poses=poses,
                          analog=np.zeros((n, 1), np.float32), valid=valid)


def free_port() -> int:
    """A TCP port free right now on loopback (tiny race, fine for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spawn_agent(control: str, rig_id: str, *extra: str, log: Path | None = None
                ) -> subprocess.Popen[bytes]:
    """`python -m devices.agent` as its own process (the real rig agent)."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([PY, "-m", "devices.agent", "--controller", control,
                             "--rig-id", rig_id, *extra], cwd=REPO, stdout=out,
                            stderr=subprocess.STDOUT)


def spawn_controller(ports: tuple[int, int, int], spool: Path, *extra: str,
                     log: Path | None = None, dsn: str | None = None) -> subprocess.Popen[bytes]:
    """`labctl controller run` as its own process; returns once it listens.

    Without `dsn` the controller keeps samples in its spool (`--store spool`); with one it
    scores and stores everything in that TimescaleDB (`--store telemetry`, the default).
    """
    c, d, a = ports
    env = dict(os.environ, LABCTL_STATE_DIR=str(spool.parent / "state"))
    if dsn is None:
        extra = ("--store", "spool", *extra)
    else:
        env["LABCTL_DATABASE__DSN"] = dsn
    out_path = log or spool.parent / "controller.log"
    out = open(out_path, "ab")  # noqa: SIM115
    p = subprocess.Popen(
        [PY, "-m", "lab_controller.cli", "controller", "run",
         "--control", f"tcp://127.0.0.1:{c}", "--data", f"tcp://127.0.0.1:{d}",
         "--api", f"tcp://127.0.0.1:{a}", "--spool-dir", str(spool), *extra],
        cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    # With the telemetry store the controller migrates and compiles the kernels first.
    end = time.monotonic() + (15 if dsn is None else 90)
    while time.monotonic() < end:
        if "listening" in out_path.read_text(errors="replace").split("controller stopped")[-1]:
            return p
        if p.poll() is not None:
            raise RuntimeError(out_path.read_text())
        time.sleep(0.05)
    raise RuntimeError("controller did not start: " + out_path.read_text())


def kill9(p: subprocess.Popen[bytes]) -> None:
    """SIGKILL by pid (a crash, no cleanup) and reap."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait(10)


def terminate(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM by pid, then SIGKILL if it does not exit."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            kill9(p)


def wait_for(cond: Any, timeout: float = 10.0, every: float = 0.02) -> bool:
    """Poll `cond()` until true or `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except Exception:  # e.g. the API not up yet
            pass
        time.sleep(every)
    return False


def stored_samples(spool_dir: Path) -> dict[str, list[int]]:
    """Per session: every sample sequence number in the spool, in storage order."""
    from lab_controller.controller import decode_spool_record
    from telemetry.spool import Spool

    out: dict[str, list[int]] = {}
    with Spool(spool_dir) as sp:
        for rec in sp.records():
            ch = decode_spool_record(rec.payload)
            out.setdefault(str(ch.session_id), []).extend(
                range(ch.first_seq, ch.first_seq + ch.count))
    return out


# ── an in-process controller harness (used through the `harness` fixture) ──────────────────


FAST: dict[str, Any] = {
    "control_endpoint": "tcp://127.0.0.1:*",
    "data_endpoint": "tcp://127.0.0.1:*",
    "api_endpoint": "tcp://127.0.0.1:*",
    # Short intervals keep the suite fast; the kill -9 test uses the production 1 s.
    "heartbeat_interval_s": 0.2,
    "timesync_interval_s": 0.5,
    "command_timeout_s": 2.0,
    "interrupted_grace_s": 5.0,
}


class Harness:
    """A running controller plus the rigs and clients a test made (all closed at teardown)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ctrl: Controller | None = None
        self.sink: SpoolSink | None = None
        self.rigs: list[ScriptedRig] = []
        self.clients: list[ApiClient] = []
        self.events: list[SessionEvent] = []

    def start(self, observers: Sequence[Any] = (), **overrides: Any) -> Controller:
        cfg = ControllerConfig(**{**FAST, **overrides})
        return self.start_with(cfg, observers=observers)

    def start_with(self, cfg: ControllerConfig, **kw: Any) -> Controller:
        self.sink = SpoolSink(self.tmp / "spool")
        self.ctrl = Controller(cfg, self.sink, event_sink=self.events.append, **kw)
        self.ctrl.start()
        return self.ctrl

    @property
    def control(self) -> str:
        assert self.ctrl is not None
        return self.ctrl.endpoints["control"]

    @property
    def api_endpoint(self) -> str:
        assert self.ctrl is not None
        return self.ctrl.endpoints["api"]

    def rig(self, rig_id: str, **kw: Any) -> ScriptedRig:
        r = ScriptedRig(self.control, rig_id, **kw).start()
        self.rigs.append(r)
        return r

    def client(self) -> ApiClient:
        c = ApiClient(self.api_endpoint, timeout_s=10)
        self.clients.append(c)
        return c

    def close(self) -> None:
        for r in self.rigs:
            r.stop()
        for c in self.clients:
            c.close()
        if self.ctrl is not None:
            self.ctrl.stop()
        if self.sink is not None:
            self.sink.close()

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--controller", required=True)
    ap.add_argument("--rig-id", required=True)
    ap.add_argument("--heartbeat", type=float, default=0.2)
    a = ap.parse_args()
    rig = ScriptedRig(a.controller, a.rig_id, heartbeat_s=a.heartbeat)
    rig._open()
    rig.run()


if __name__ == "__main__":
    main()
