"""Scale-out scoring: a pool of scoring worker processes behind ZeroMQ (docs/scoring-workers.md).

* :class:`ScoringPool` (in the controller process) binds a ROUTER; workers (``labctl workers
  run --connect ...`` or :meth:`ScoringPool.spawn` for local processes) connect a DEALER and
  say ``ready``. A new session goes to the live worker with the fewest sessions and stays
  there (session affinity: the streaming alignment state lives in that worker).
* A worker that is silent for ``dead_after_s`` (or whose connection is gone) is dead; each of
  its sessions moves to another worker, which rebuilds the scorer state by re-scoring the
  session from its first sample: the stored samples (``history``, e.g. the telemetry
  database) up to the pool's retained tail, then the retained chunks. The pool forwards only
  windows it has not delivered yet (by window index) and only cues of chunks not yet
  answered, so the score windows continue without a gap or a duplicate.
* :class:`PoolScoringObserver` is a ``SessionObserver`` (lab_controller.controller.observers)
  over the pool; :class:`PipelineOutputs` stores its windows, cues and results through a
  ``LabPipeline`` exactly like the in-process ``ScoringObserver`` does.

Callers talk to the pool's broker thread through an inproc PUSH socket per thread, so
``feed`` never waits for a worker (pipelined; cues come back with a later ``take_cues``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import hashlib
import logging
import math
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import zmq

from lab_controller import protocol as P
from lab_controller import worker_protocol as W
from lab_controller.controller.config import DEFAULT_GC_THRESHOLDS
from lab_controller.controller.observers import SessionInfo
from lab_controller.scoring import (
    Cue,
    DataQuality,
    FinalResult,
    MetricWindow,
    MotionSummary,
    ScoreWindow,
    SessionScorer,
)
from sim_kernels.scoring import ComponentScores, MetricBreakdown

log = logging.getLogger(__name__)

# Replayed history goes to the new worker in pieces of at most this many samples (~8.5 s at
# 120 Hz, ~250 KB): large enough that the hop costs nothing, small enough to interleave.
REPLAY_PIECE = 1024
# A worker with this many chunks unanswered gets no more until it catches up (the callers
# then block on their inproc socket: back-pressure up to the controller's observer queue).
MAX_INFLIGHT = 4096
# Final results kept for wait_final() after their session is done (the listener has them too).
FINALS_KEPT = 4096
_OP = struct.Struct("<c36sqqdd")  # op, session id text, first_seq, n, rig_time_first, period


# ---- conversions of scorer outputs ---------------------------------------------------------
def window_to_json(w: ScoreWindow) -> list[Any]:
    n = W.nan_to_null
    return [w.rig_time, w.duration_s, n(w.score), n(w.progress), n(w.distance),
            {k: [n(m.mean), n(m.std), n(m.fraction_in_window), m.observations]
             for k, m in w.metrics.items()}]


def window_from_json(x: Sequence[Any]) -> ScoreWindow:
    f = W.null_to_nan
    return ScoreWindow(rig_time=float(x[0]), duration_s=float(x[1]), score=f(x[2]),
                       progress=f(x[3]), distance=f(x[4]),
                       metrics={k: MetricWindow(f(v[0]), f(v[1]), f(v[2]), int(v[3]))
                                for k, v in x[5].items()})


def cue_to_json(c: Cue) -> list[Any]:
    return [c.parameter, c.direction, c.message, c.severity, c.rig_time, c.active]


def cue_from_json(x: Sequence[Any]) -> Cue:
    return Cue(str(x[0]), str(x[1]), str(x[2]), str(x[3]), float(x[4]), bool(x[5]))


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return W.nan_to_null(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


def final_to_json(r: FinalResult) -> dict[str, Any]:
    out: dict[str, Any] = _jsonable(dataclasses.asdict(r))
    return out


def _build(cls: Any, data: dict[str, Any]) -> Any:
    kw = {}
    for f in dataclasses.fields(cls):
        v = data[f.name]
        if f.type == "float" and v is None:
            v = math.nan
        kw[f.name] = v
    return cls(**kw)


def final_from_json(d: dict[str, Any]) -> FinalResult:
    d = dict(d)
    d["components"] = _build(ComponentScores, d["components"])
    d["metrics"] = tuple(_build(MetricBreakdown, m) for m in d["metrics"])
    d["motion"] = _build(MotionSummary, d["motion"])
    d["data_quality"] = _build(DataQuality, d["data_quality"])
    result: FinalResult = _build(FinalResult, d)
    return result


# ---- the worker ----------------------------------------------------------------------------
class _Scorers:
    """Exercise models shared by sessions of the same exercise, rubric and rate."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, float], Any] = {}

    def scorer(self, exercise_id: str, rubric_json: str | None, rate_hz: float,
               tool_index: int) -> SessionScorer:
        from lab_controller.exercises import load_exercise
        from sim_kernels.rubric import Rubric
        from sim_kernels.session import ExerciseModel

        key = (exercise_id, hashlib.sha256((rubric_json or "").encode()).hexdigest(), rate_hz)
        model = self._models.get(key)
        if model is None:
            ex = load_exercise(exercise_id)
            rb = ex.rubric if rubric_json is None else Rubric.from_json(rubric_json)
            # the same construction as SessionScorer.__init__ (max_gap_s default 0.1)
            model = ExerciseModel.build(rb, ex.scene["geometry"], rate_hz,
                                        ex.reference.tool_pose, ex.rate_hz, max_gap_s=0.1)
            self._models[key] = model
        return SessionScorer.from_model(model, tool_index)


def serve(connect: str, worker_id: str | None = None, *, heartbeat_s: float = W.HEARTBEAT_S,
          stop: threading.Event | None = None) -> None:
    """Run one scoring worker until ``stop`` is set (or forever)."""
    wid = worker_id or f"w-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = wid.encode()
    sock.sndhwm = sock.rcvhwm = 100_000
    sock.connect(connect)
    scorers = _Scorers()
    sessions: dict[str, tuple[SessionScorer, list[int]]] = {}  # scorer, [windows emitted]

    def send(msg: dict[str, Any]) -> None:
        f0, f1 = W.encode(msg)
        sock.send(f0, zmq.SNDMORE)
        sock.send(f1)

    send({"type": "ready", "worker_id": wid, "pid": os.getpid()})
    next_beat = time.monotonic() + heartbeat_s
    try:
        while stop is None or not stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                send({"type": "heartbeat", "worker_id": wid, "sessions": len(sessions)})
                next_beat = now + heartbeat_s
            if not sock.poll(int(1000 * max(0.0, next_beat - now)) + 1):
                continue
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg: dict[str, Any] = {}
                try:
                    msg, payload = W.decode(frames)
                    _handle(msg, payload, sessions, scorers, send)
                except (W.WorkerProtocolError, ValueError, KeyError) as exc:
                    send({"type": "error", "session_id": msg.get("session_id"),
                          "detail": str(exc)[:500]})
    finally:
        sock.close(0)
        ctx.term()


def _handle(msg: dict[str, Any], payload: bytes,
            sessions: dict[str, tuple[SessionScorer, list[int]]], scorers: _Scorers,
            send: Callable[[dict[str, Any]], None]) -> None:
    kind = msg["type"]
    sid = str(msg.get("session_id", ""))
    if kind == "chunk":
        scorer, count = sessions[sid]
        n, t = int(msg["n"]), int(msg["trackers"])
        poses, valid = W.unpack_chunk(n, t, payload)
        windows, cues = scorer.feed(float(msg["rig_time_first"]), float(msg["period"]),
                                    poses, valid)
        send({"type": "scored", "session_id": sid, "seq_hi": int(msg["seq"]) + n - 1,
              "window0": count[0], "windows": [window_to_json(w) for w in windows],
              "cues": [cue_to_json(c) for c in cues]})
        count[0] += len(windows)
    elif kind == "chunks":  # several consecutive chunks of one session, fed one by one
        scorer, count = sessions[sid]
        t, period = int(msg["trackers"]), float(msg["period"])
        all_w: list[Any] = []
        all_c: list[Any] = []
        off = 0
        for _seq, n, t0 in msg["parts"]:
            size = 29 * int(n) * t
            poses, valid = W.unpack_chunk(int(n), t, payload[off:off + size])
            off += size
            windows, cues = scorer.feed(float(t0), period, poses, valid)
            all_w += [window_to_json(w) for w in windows]
            all_c += [cue_to_json(c) for c in cues]
        last_seq, last_n, _ = msg["parts"][-1]
        send({"type": "scored", "session_id": sid, "seq_hi": int(last_seq) + int(last_n) - 1,
              "window0": count[0], "windows": all_w, "cues": all_c})
        count[0] += len(all_w)
    elif kind == "open":
        sessions[sid] = (scorers.scorer(str(msg["exercise_id"]), msg.get("rubric"),
                                        float(msg["rate_hz"]), int(msg.get("tool_index", 0))),
                         [0])
    elif kind == "finish":
        scorer, _ = sessions.pop(sid)
        send({"type": "final", "session_id": sid, "result": final_to_json(scorer.finish())})
    elif kind == "close":
        sessions.pop(sid, None)
    elif kind != "heartbeat":
        raise W.WorkerProtocolError(f"unknown type {kind!r}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="one scoring worker process")
    ap.add_argument("--connect", required=True, help="the pool's endpoint, e.g. tcp://ctl:5570")
    ap.add_argument("--id", default=None, help="worker id (default: w-<pid>-<random>)")
    args = ap.parse_args(argv)
    from sim_kernels import warmup

    warmup()  # compile before saying ready: no JIT pause on the first chunk
    # This process only scores: keep CPython's full collection off the start-up objects
    # (tens of ms per collection with numba loaded; see ControllerConfig.gc_freeze), and
    # collect rarely (ControllerConfig.gc_thresholds: the same measured reasoning).
    gc.set_threshold(*DEFAULT_GC_THRESHOLDS)
    gc.collect()
    gc.freeze()
    serve(args.connect, args.id)
    return 0


# ---- the pool ------------------------------------------------------------------------------
class SampleHistory(Protocol):
    """Stored samples of a session with ``seq < upto``, in seq order; None if none stored."""

    def __call__(self, session_id: str, upto: int) -> tuple[
            npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float32],
            npt.NDArray[np.bool_]] | None: ...


def telemetry_history(dsn: str) -> SampleHistory:
    """Stored frames from the telemetry database (``telemetry.queries.session_frames``)."""
    from telemetry.queries import session_frames

    def history(session_id: str, upto: int) -> tuple[Any, Any, Any, Any] | None:
        f = session_frames(dsn, uuid.UUID(session_id))
        if f is None:
            return None
        keep = f.seq < upto
        t = f.poses.shape[1]
        bits = np.int32(1) << np.arange(t, dtype=np.int32)
        valid = (f.valid_mask[keep, None] & bits[None, :]) != 0
        return f.seq[keep], f.rig_time[keep], f.poses[keep], valid

    return history


class PoolListener(Protocol):
    """Where the pool delivers results (called on the pool's broker thread)."""

    def on_windows(self, session_id: str, meta: Any, windows: list[ScoreWindow],
                   seq_hi: int) -> None: ...
    def on_cues(self, session_id: str, meta: Any, cues: list[Cue]) -> None: ...
    def on_final(self, session_id: str, meta: Any, result: FinalResult) -> None: ...


@dataclass
class _Chunk:
    first_seq: int
    n: int
    at: float  # monotonic time received
    f1: bytes  # the packed arrays (worker_protocol.pack_chunk)
    t0: float
    period: float
    sid: str

    @property
    def f0(self) -> bytes:
        """Frame 0 of this chunk as a single ``chunk`` message."""
        f0, _ = W.encode({"type": "chunk", "session_id": self.sid, "seq": self.first_seq,
                          "n": self.n, "trackers": len(self.f1) // (29 * self.n),
                          "rig_time_first": self.t0, "period": self.period})
        return f0

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.n - 1


@dataclass
class _Session:
    sid: str
    open_msg: dict[str, Any]
    meta: Any
    worker: bytes | None = None
    period: float | None = None
    trackers: int = 0
    next_seq: int = 0
    retained: collections.deque[_Chunk] = field(default_factory=collections.deque)
    windows_delivered: int = 0
    delivered_seq: int = -1
    finishing: bool = False
    final: FinalResult | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cues: list[Cue] = field(default_factory=list)
    handovers: int = 0
    error: str | None = None


@dataclass
class _Worker:
    ident: bytes
    pid: int
    last_seen: float
    sessions: set[str] = field(default_factory=set)
    inflight: int = 0
    chunks: int = 0


class ScoringPool:
    """The controller side of scale-out scoring (see the module docstring)."""

    def __init__(self, bind: str = "tcp://127.0.0.1:0", *, history: SampleHistory | None = None,
                 retain_s: float | None = None, dead_after_s: float = W.DEAD_AFTER_S,
                 listener: PoolListener | None = None,
                 rebuild_wait_s: float = 5.0) -> None:
        if retain_s is not None and history is None:
            raise ValueError("a bounded retention (retain_s) needs a history to rebuild from")
        self.history = history
        self.retain_s = retain_s
        self.dead_after_s = dead_after_s
        self.listener = listener
        self.rebuild_wait_s = rebuild_wait_s
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.linger = 0
        self._router.router_mandatory = 1
        self._router.sndhwm = self._router.rcvhwm = 100_000
        self._router.bind(bind)
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._inproc = f"inproc://scoring-pool-{id(self)}"
        self._pull = self._ctx.socket(zmq.PULL)
        self._pull.rcvhwm = 10_000
        self._pull.bind(self._inproc)
        self._local = threading.local()
        self._pushes: list[zmq.Socket[bytes]] = []
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._pending: dict[str, list[_Chunk]] = {}
        self._finals: collections.OrderedDict[str, _Session] = collections.OrderedDict()
        self._replayed: set[str] = set()
        self._workers: dict[bytes, _Worker] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters: dict[str, int] = collections.defaultdict(int)

    # ---- life cycle --------------------------------------------------------------------
    def start(self) -> ScoringPool:
        self._thread = threading.Thread(target=self._run, name="scoring-pool", daemon=True)
        self._thread.start()
        return self

    def spawn(self, n: int) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` local worker processes connected to this pool."""
        new = [subprocess.Popen([sys.executable, "-m", "lab_controller.scoring_workers",
                                 "--connect", self.endpoint]) for _ in range(n)]
        self._procs.extend(new)
        return new

    def wait_workers(self, n: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.live_workers() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.live_workers()} of {n} scoring workers ready")
            time.sleep(0.02)

    def live_workers(self) -> int:
        with self._lock:
            return len(self._workers)

    def workers(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {w.ident.decode(): {"pid": w.pid, "sessions": sorted(w.sessions),
                                       "inflight": w.inflight, "chunks": w.chunks}
                    for w in self._workers.values()}

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in self._pushes:
            s.close(0)
        self._router.close(0)
        self._pull.close(0)
        self._ctx.term()

    # ---- caller side (any thread) --------------------------------------------------------
    def _push(self) -> zmq.Socket[bytes]:
        s: zmq.Socket[bytes] | None = getattr(self._local, "push", None)
        if s is None:
            s = self._ctx.socket(zmq.PUSH)
            s.sndhwm = 10_000
            s.connect(self._inproc)
            self._local.push = s
            with self._lock:
                self._pushes.append(s)
        return s

    def _op(self, op: bytes, sid: str, f0: bytes = b"", f1: bytes = b"", first_seq: int = 0,
            n: int = 0, t0: float = 0.0, period: float = 0.0) -> None:
        s = self._push()
        s.send(_OP.pack(op, sid.encode(), first_seq, n, t0, period), zmq.SNDMORE)
        s.send(f0, zmq.SNDMORE)
        s.send(f1)

    def open(self, session_id: str, exercise_id: str, rate_hz: float, *, tool_index: int = 0,
             rubric_json: str | None = None, meta: Any = None) -> None:
        """Start scoring a session (``rubric_json``: a rubric document; None: the library's)."""
        msg = {"type": "open", "session_id": session_id, "exercise_id": exercise_id,
               "rate_hz": rate_hz, "tool_index": tool_index, "rubric": rubric_json}
        with self._lock:
            self._sessions[session_id] = _Session(session_id, msg, meta)
        self._op(b"o", session_id)

    def feed(self, session_id: str, first_seq: int, rig_time_first: float, period: float,
             poses: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_]) -> None:
        # Only the arrays are packed here; the broker writes the JSON header when it sends
        # (once per batch), which keeps the caller's per-chunk cost low.
        self._op(b"c", session_id, b"", W.pack_chunk(poses, valid), first_seq,
                 int(poses.shape[0]), rig_time_first, period)

    def finish(self, session_id: str) -> None:
        """No more chunks: the worker computes the final result (``wait_final``/listener)."""
        self._op(b"f", session_id)

    def close_session(self, session_id: str) -> None:
        """Drop a session without a result (aborted/failed)."""
        self._op(b"x", session_id)

    def take_cues(self, session_id: str) -> list[Cue]:
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None or not s.cues:
                return []
            out, s.cues = s.cues, []
            return out

    def wait_final(self, session_id: str, timeout_s: float = 30.0) -> FinalResult:
        with self._lock:
            s = self._sessions.get(session_id) or self._finals.get(session_id)
        if s is None or not s.done.wait(timeout_s) or s.final is None:
            raise TimeoutError(f"no final result for {session_id}"
                               + (f": {s.error}" if s is not None and s.error else ""))
        with self._lock:
            self._finals.pop(session_id, None)
        return s.final

    def session_stats(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._sessions[session_id]
            return {"worker": None if s.worker is None else s.worker.decode(),
                    "windows_delivered": s.windows_delivered, "handovers": s.handovers,
                    "delivered_seq": s.delivered_seq, "retained_chunks": len(s.retained)}

    # ---- broker thread -------------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        last_check = time.monotonic()
        pulling = True
        while not self._stop.is_set():
            with self._lock:
                room = all(w.inflight < MAX_INFLIGHT for w in self._workers.values())
            if room != pulling:  # stop reading callers while a worker is saturated
                if room:
                    poller.register(self._pull, zmq.POLLIN)
                else:
                    poller.unregister(self._pull)
                    self.counters["backpressure_pauses"] += 1
                pulling = room
            events = dict(poller.poll(50))
            try:
                if self._router in events:
                    for _ in range(1000):
                        try:
                            frames = self._router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._from_worker(frames)
                if room and self._pull in events:
                    for _ in range(1000):
                        try:
                            frames = self._pull.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._from_caller(frames)
                    self._flush()
                now = time.monotonic()
                if now - last_check >= 0.05:
                    last_check = now
                    self._check_workers(now)
            except Exception:  # keep the broker alive; the error is logged with its trace
                self.counters["broker_errors"] += 1
                log.exception("scoring pool broker")

    def _send(self, w: _Worker, f0: bytes, f1: bytes) -> bool:
        try:
            self._router.send(w.ident, zmq.SNDMORE)
            self._router.send(f0, zmq.SNDMORE)
            self._router.send(f1)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker's connection is gone
            log.warning("scoring worker %s unreachable: %s", w.ident, exc)
            self._worker_dead(w, "unreachable")
            return False

    def _send_msg(self, w: _Worker, msg: dict[str, Any]) -> bool:
        f0, f1 = W.encode(msg)
        return self._send(w, f0, f1)

    def _flush(self) -> None:
        """Send the chunks gathered in this pass: one message per session (adaptive
        batching: one chunk when the pool keeps up, many when callers run ahead)."""
        pending, self._pending = self._pending, {}
        self._replayed.clear()
        for sid, chunks in pending.items():
            if sid in self._replayed:
                continue  # handed over during this flush: the replay sent these chunks
            s = self._sessions.get(sid)
            w = self._workers.get(s.worker) if s is not None and s.worker is not None else None
            if w is None:
                continue  # retained; a hand-over replays them
            if len(chunks) == 1:
                f0, f1 = chunks[0].f0, chunks[0].f1
            else:
                trackers = len(chunks[0].f1) // (29 * chunks[0].n)
                f0, f1 = W.encode({"type": "chunks", "session_id": sid, "trackers": trackers,
                                   "period": chunks[0].period,
                                   "parts": [[c.first_seq, c.n, c.t0] for c in chunks]},
                                  b"".join(c.f1 for c in chunks))
            if self._send(w, f0, f1):
                w.inflight += 1
                w.chunks += len(chunks)

    def _from_caller(self, frames: list[bytes]) -> None:
        op, sid_b, first_seq, n, t0, period = _OP.unpack(frames[0])
        sid = sid_b.decode()
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            return
        if op != b"c":
            self._flush()  # keep every session's order: its chunks go before open/finish/close
        if op == b"o":
            self._assign(s, replay=False)
        elif op == b"c":
            if first_seq < s.next_seq:
                self.counters["duplicate_chunks"] += 1
                return
            s.next_seq = first_seq + n
            s.period = period
            ch = _Chunk(first_seq, n, time.monotonic(), frames[2], t0, period, sid)
            s.retained.append(ch)
            if s.worker is not None:
                self._pending.setdefault(sid, []).append(ch)
        elif op == b"f":
            s.finishing = True
            w = self._workers.get(s.worker) if s.worker is not None else None
            if w is not None:
                self._send_msg(w, {"type": "finish", "session_id": sid})
        elif op == b"x":
            w = self._workers.get(s.worker) if s.worker is not None else None
            if w is not None:
                self._send_msg(w, {"type": "close", "session_id": sid})
                w.sessions.discard(sid)
            with self._lock:
                self._sessions.pop(sid, None)

    def _from_worker(self, frames: list[bytes]) -> None:
        ident = frames[0]
        try:
            msg, _ = W.decode(frames[1:])
        except W.WorkerProtocolError as exc:
            self.counters["bad_worker_messages"] += 1
            log.warning("bad message from scoring worker %r: %s", ident, exc)
            return
        now = time.monotonic()
        kind = msg["type"]
        w = self._workers.get(ident)
        if kind == "ready":
            if w is None:
                w = _Worker(ident, int(msg.get("pid", 0)), now)
                with self._lock:
                    self._workers[ident] = w
                log.info("scoring worker %s ready (pid %s)", ident.decode(), w.pid)
                with self._lock:
                    orphans = [s for s in self._sessions.values() if s.worker is None]
                for orphan in orphans:  # sessions waiting for a worker
                    self._assign(orphan, replay=True)
            return
        if w is None:
            return  # declared dead earlier; its sessions live elsewhere now
        w.last_seen = now
        sid = str(msg.get("session_id") or "")
        with self._lock:
            found = self._sessions.get(sid)
        if kind == "heartbeat" or found is None or found.worker != ident:
            return
        s = found
        if kind == "scored":
            w.inflight = max(0, w.inflight - 1)
            self._deliver(s, msg)
        elif kind == "final":
            s.final = final_from_json(msg["result"])
            w.sessions.discard(sid)
            with self._lock:  # done: keep only the result, for wait_final (bounded)
                self._sessions.pop(sid, None)
                self._finals[sid] = s
                while len(self._finals) > FINALS_KEPT:
                    self._finals.popitem(last=False)
            if self.listener is not None:
                self.listener.on_final(sid, s.meta, s.final)
            s.done.set()
        elif kind == "error":
            self.counters["worker_errors"] += 1
            s.error = str(msg.get("detail"))
            log.warning("scoring worker %s, session %s: %s", ident.decode(), sid, s.error)
            if s.finishing:
                s.done.set()

    def _deliver(self, s: _Session, msg: dict[str, Any]) -> None:
        seq_hi = int(msg["seq_hi"])
        replayed = seq_hi <= s.delivered_seq
        w0 = int(msg["window0"])
        fresh: list[ScoreWindow] = []
        for i, raw in enumerate(msg["windows"]):
            idx = w0 + i
            if idx < s.windows_delivered:
                continue
            if idx > s.windows_delivered:  # would be a gap: never expected, counted if seen
                self.counters["window_gaps"] += 1
            fresh.append(window_from_json(raw))
            s.windows_delivered = idx + 1
        cues = [] if replayed else [cue_from_json(c) for c in msg["cues"]]
        if replayed:
            self.counters["replayed_replies"] += 1
        s.delivered_seq = max(s.delivered_seq, seq_hi)
        if cues:
            with self._lock:
                s.cues.extend(cues)
        if self.listener is not None:
            if fresh:
                self.listener.on_windows(s.sid, s.meta, fresh, seq_hi)
            if cues:
                self.listener.on_cues(s.sid, s.meta, cues)
        self._prune(s, time.monotonic())

    def _prune(self, s: _Session, now: float) -> None:
        """Forget retained chunks that are answered and older than ``retain_s``."""
        if self.retain_s is None:
            return
        cut = now - self.retain_s
        while s.retained and s.retained[0].last_seq <= s.delivered_seq and \
                s.retained[0].at < cut:
            s.retained.popleft()

    def _check_workers(self, now: float) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            self._prune(s, now)
        for w in list(self._workers.values()):
            if now - w.last_seen > self.dead_after_s:
                self._worker_dead(w, f"silent for {now - w.last_seen:.2f} s")

    def _worker_dead(self, w: _Worker, why: str) -> None:
        with self._lock:
            if self._workers.pop(w.ident, None) is None:
                return
        self.counters["workers_lost"] += 1
        log.warning("scoring worker %s dead (%s); moving %d sessions", w.ident.decode(), why,
                    len(w.sessions))
        for sid in sorted(w.sessions):
            s = self._sessions.get(sid)
            if s is not None and s.worker == w.ident:
                s.worker = None
                s.handovers += 1
                self._assign(s, replay=True)

    def _assign(self, s: _Session, replay: bool) -> None:
        with self._lock:
            live = sorted(self._workers.values(), key=lambda x: (len(x.sessions), x.inflight))
        if not live:
            s.worker = None  # waits for a worker; chunks are retained meanwhile
            return
        w = live[0]
        s.worker = w.ident
        w.sessions.add(s.sid)
        if not self._send_msg(w, s.open_msg):
            return
        if replay:
            self.counters["handovers"] += 1
            self._pending.pop(s.sid, None)  # the replay re-sends every retained chunk
            self._replayed.add(s.sid)
            if not self._replay(s, w):
                return
        if s.finishing:
            self._send_msg(w, {"type": "finish", "session_id": s.sid})

    def _replay(self, s: _Session, w: _Worker) -> bool:
        """Re-send the whole session so far: stored history, then the retained tail."""
        first = s.retained[0].first_seq if s.retained else s.next_seq
        if first > 0:
            got = self._history_upto(s.sid, first)
            if got is None:
                s.error = f"cannot rebuild: stored samples do not reach seq {first}"
                self.counters["rebuild_failures"] += 1
                log.error("session %s: %s", s.sid, s.error)
                return False
            seq, rig_time, poses, valid = got
            for a, b in _pieces(rig_time, s.period or 0.0):
                f0, f1 = W.encode({"type": "chunk", "session_id": s.sid, "seq": int(seq[a]),
                                   "n": b - a, "trackers": int(poses.shape[1]),
                                   "rig_time_first": float(rig_time[a]),
                                   "period": s.period}, W.pack_chunk(poses[a:b], valid[a:b]))
                if not self._send(w, f0, f1):
                    return False
                w.inflight += 1
        for ch in list(s.retained):
            if not self._send(w, ch.f0, ch.f1):
                return False
            w.inflight += 1
        return True

    def _history_upto(self, sid: str, upto: int) -> Any:
        if self.history is None:
            return None
        deadline = time.monotonic() + self.rebuild_wait_s
        while True:  # the writer may still be committing the newest frames
            got = self.history(sid, upto)
            if got is not None and got[0].shape[0] == upto and \
                    (upto == 0 or int(got[0][-1]) == upto - 1):
                return got
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)


def _pieces(rig_time: npt.NDArray[np.float64], period: float) -> list[tuple[int, int]]:
    """Split stored frames into runs whose times are exactly first + k × period (as the rig's
    chunks were), at most REPLAY_PIECE long, so the replay sees bit-identical times."""
    out: list[tuple[int, int]] = []
    n = int(rig_time.shape[0])
    a = 0
    while a < n:
        b = min(n, a + REPLAY_PIECE)
        expect = rig_time[a] + np.arange(b - a, dtype=np.float64) * period
        bad = np.flatnonzero(expect != rig_time[a:b])
        if bad.size:
            b = a + int(bad[0])
        out.append((a, b))
        a = b
    return out


# ---- the observer and its outputs ----------------------------------------------------------
class PoolScoringObserver:
    """A ``SessionObserver`` that scores through a :class:`ScoringPool`."""

    def __init__(self, pool: ScoringPool, outputs: PoolListener | None = None) -> None:
        self.pool = pool
        if outputs is not None:
            pool.listener = outputs
        self._params: dict[str, SessionInfo] = {}

    def on_start(self, info: SessionInfo) -> None:
        tool = info.roles.index("tool") if "tool" in info.roles else 0
        start = getattr(self.pool.listener, "on_start", None)
        if start is not None:
            start(info)
        self._params[info.session_id] = info
        self.pool.open(info.session_id, info.exercise_id, info.rate_hz, tool_index=tool,
                       meta=info)

    def on_chunk(self, session_id: str, chunk: P.SampleChunk) -> Sequence[P.Cue]:
        if session_id not in self._params:
            return ()
        self.pool.feed(session_id, chunk.first_seq, chunk.header.rig_time_first,
                       chunk.header.period, chunk.poses, chunk.valid)
        return [P.Cue(session_id=session_id, parameter=c.parameter,
                      direction=_direction(c.direction), message=c.message[:200],
                      severity=P.Severity(c.severity) if c.severity in
                      P.Severity.__members__.values() else P.Severity.WARNING,
                      ref_seq=chunk.last_seq, ref_rig_time=c.rig_time,
                      controller_time=time.time())
                for c in self.pool.take_cues(session_id)]

    def on_end(self, session_id: str, final_state: str) -> None:
        if self._params.pop(session_id, None) is None:
            return
        if final_state == "finished":
            self.pool.finish(session_id)
        else:
            self.pool.close_session(session_id)
            end = getattr(self.pool.listener, "on_end", None)
            if end is not None:
                end(session_id, final_state)


def _direction(word: str) -> P.CueDirection:
    from lab_controller.pipeline import _DIRECTION

    return _DIRECTION.get(word, P.CueDirection.NONE)


class PipelineOutputs:
    """Stores the pool's windows, cues and results through a ``LabPipeline``'s writer, the
    way its in-process ``ScoringObserver`` does (same records, same live view fields)."""

    def __init__(self, pipeline: Any) -> None:
        self.p = pipeline
        self._state: dict[str, dict[str, Any]] = {}

    def on_start(self, info: SessionInfo) -> None:
        from lab_controller.exercises import load_exercise
        from telemetry import records as rec

        ex = load_exercise(info.exercise_id)
        rules = ex.rubric.metrics
        names = tuple(rules)
        self._state[info.session_id] = {
            "idx": 0, "names": names, "offset": info.clock_offset_s or 0.0,
            "ideal": np.array([rules[k].ideal for k in names], np.float32),
            "lo": np.array([rules[k].min for k in names], np.float32),
            "hi": np.array([rules[k].max for k in names], np.float32)}
        self.p.submit(rec.SessionRecord(
            session_id=uuid.UUID(info.session_id), rig_id=info.rig_id, state="running",
            trainee_id=info.trainee, exercise_id=info.exercise_id,
            rubric_id=ex.rubric.rubric_id, rubric_version=int(ex.rubric.version)))

    def on_windows(self, session_id: str, meta: Any, windows: list[ScoreWindow],
                   seq_hi: int) -> None:
        from telemetry import records as rec

        st = self._state.get(session_id)
        if st is None:
            return
        names = st["names"]
        n, k = len(windows), len(names)
        arr = np.full((3, n, k), np.nan, np.float32)
        for i, w in enumerate(windows):
            for j, name in enumerate(names):
                m = w.metrics.get(name)
                if m is not None:
                    arr[:, i, j] = (m.mean, m.std, m.fraction_in_window)
        idx = np.arange(st["idx"], st["idx"] + n, dtype=np.int32)
        st["idx"] += n
        self.p.submit(rec.ScoreWindowBatch(
            session_id=uuid.UUID(session_id), rig_id=meta.rig_id, window_idx=idx,
            time_us=np.array([round((w.rig_time - st["offset"]) * 1e6) for w in windows],
                             np.int64),
            seq_hi=np.full(n, seq_hi, np.int64),
            progress=np.array([w.progress for w in windows], np.float32),
            alignment_distance=np.array([w.distance for w in windows], np.float32),
            window_score=np.array([w.score for w in windows], np.float32),
            params=names, mean=arr[0], std=arr[1], frac_in_window=arr[2],
            ideal=st["ideal"], lo=st["lo"], hi=st["hi"]))
        live = self.p.live.get(session_id)
        if live is not None:
            live.windows += n
            live.window_score = windows[-1].score
            live.progress = windows[-1].progress
            live.distance = windows[-1].distance

    def on_cues(self, session_id: str, meta: Any, cues: list[Cue]) -> None:
        from telemetry import records as rec

        st = self._state.get(session_id)
        offset = 0.0 if st is None else st["offset"]
        levels = {"info": 0, "warning": 1, "critical": 2}
        for c in cues:
            self.p.submit(rec.Cue(time_us=round((c.rig_time - offset) * 1e6),
                                  session_id=uuid.UUID(session_id), rig_id=meta.rig_id,
                                  kind=c.direction, param=c.parameter,
                                  severity=levels.get(c.severity, 1), message=c.message))
        live = self.p.live.get(session_id)
        if live is not None:
            live.cues += sum(1 for c in cues if c.active)

    def on_end(self, session_id: str, final_state: str) -> None:
        """Aborted / failed: no mark (as in-process); forget the session."""
        self._state.pop(session_id, None)

    def on_final(self, session_id: str, meta: Any, result: FinalResult) -> None:
        from lab_controller.pipeline import _result_record

        self._state.pop(session_id, None)
        live = self.p.live.get(session_id)
        if live is not None:
            live.result = result
        self.p.submit(_result_record(meta, result))


if __name__ == "__main__":
    sys.exit(main())
