"""Transport benchmark: rig agents → controller → spool, side by side with raw pyzmq PUSH/PULL.

Two parts, JSON lines on stdout (performance.md targets: ratio ≥ 0.5; ≥ 300 rigs × 120 Hz × 6
trackers sustained on this 2-core machine with the rigs in other processes):

1. **throughput** (per chunk size): the most samples per second that become *durable* when
   ``--procs`` processes of firehose rigs (`devices.agent.AgentGroup`, a driver that produces as
   fast as the credit window drains) stream to the real `lab_controller.controller.Controller`
   with its `SpoolSink` (append + group-committed fsync, DATA_ACK after durability) — and, in the
   same run, interleaved, the samples per second that ``--procs`` raw pyzmq PUSH processes move
   to one PULL socket with the *same bytes* (pre-encoded chunk frames, two ``send`` calls by
   hand, receiver only counts). Ratio = ours / raw. Median of ``--repeat`` runs each.
2. **sustained**: N real-time rigs (120 Hz, 6 trackers, 20 ms chunks; ``python -m devices.agent
   --count N/procs`` in ``--procs`` processes) against the same controller: offered vs durable
   samples/s, controller and rig CPU, backlog, and after STOP every session complete (durable
   through its END_OF_STREAM last_seq, no gaps). N steps through ``--rigs``.

The controller runs in this process (its loop and spool threads); ``controller_cpu`` is this
process's CPU time / wall time (the bench's own thread only sleeps and polls the API).

Usage: ``.venv/bin/python benchmarks/bench_transport.py [--quick] [--rigs 100,200,300]
[--procs 4] [--duration 10] [--chunks 3,32] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devices.agent import AgentConfig, AgentGroup, RigAgent  # noqa: E402
from devices.driver import DriverInfo, SampleBlock, SessionContext  # noqa: E402
from lab_controller import protocol as P  # noqa: E402
from lab_controller.controller import (  # noqa: E402
    ApiClient,
    ApiError,
    Controller,
    ControllerConfig,
    SpoolSink,
)

TRACKERS = (
    ("tool", "tool"),
    ("headset", "headset"),
    ("off_hand", "off_hand"),
    ("tool_hand", "tool_hand"),
    ("workpiece", "workpiece"),
    ("waist", "other"),
)
TRACKER_ARG = ",".join(f"{n}:{r}" for n, r in TRACKERS)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def emit(**kw: Any) -> None:
    print(json.dumps(kw, sort_keys=True), flush=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ── the chunk both paths move ─────────────────────────────────────────────────────────────────


def sample_block(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    poses = rng.normal(size=(n, len(TRACKERS), 7)).astype(np.float32) * 100
    return poses, np.zeros((n, 0), np.float32), np.ones((n, len(TRACKERS)), bool)


def chunk_frames(n: int) -> tuple[bytes, bytes]:
    poses, analog, valid = sample_block(n)
    layout = P.make_layout(TRACKERS, ())
    return P.encode_chunk(
        rig_handle=1,
        layout=layout,
        session_id=uuid.uuid4(),
        first_seq=0,
        rig_time_first=0.0,
        period=0.001,
        poses=poses,
        analog=analog,
        valid=valid,
    )


# ── raw pyzmq baseline ────────────────────────────────────────────────────────────────────────


def _raw_sender(endpoint: str, n: int, start_at: float, stop_at: float) -> None:
    f0, f1 = chunk_frames(n)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.linger = 0
    push.sndtimeo = 200  # blocking at the HWM is the back-pressure; the timeout only lets us quit
    push.connect(endpoint)
    while time.time() < start_at:
        time.sleep(0.005)
    send = push.send
    more = zmq.SNDMORE
    while time.time() < stop_at:
        try:
            for _ in range(256):
                send(f0, more)
                send(f1)
        except zmq.Again:
            continue
    push.close(0)
    ctx.term()


def raw_run(procs: int, n: int, warmup: float, duration: float) -> dict[str, float]:
    """Samples/s that ``procs`` PUSH processes move to one PULL (receiver only counts)."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.linger = 0
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    spawn = mp.get_context("spawn")
    start_at = time.time() + 5.0  # children import numpy/zmq first (slow on a loaded machine)
    t_measure0, t_measure1 = start_at + warmup, start_at + warmup + duration
    senders = [
        spawn.Process(target=_raw_sender, args=(f"tcp://127.0.0.1:{port}", n, start_at, t_measure1 + 1.0))
        for _ in range(procs)
    ]
    for p in senders:
        p.start()
    recv = pull.recv
    count = c0 = c1 = 0
    w0 = w1 = cpu0 = cpu1 = 0.0
    phase = 0
    while phase < 2 and time.time() < t_measure1 + 30:
        if not pull.poll(100):
            continue
        try:
            for _ in range(1000):
                recv(zmq.NOBLOCK)
                recv()  # the second frame of a message is there once the first is
                count += 1
        except zmq.Again:
            pass
        now = time.time()
        if phase == 0 and now >= t_measure0:
            c0, w0, cpu0, phase = count, now, time.process_time(), 1
        elif phase == 1 and now >= t_measure1:
            c1, w1, cpu1, phase = count, now, time.process_time(), 2
    for p in senders:
        p.join(10)
        if p.is_alive():
            p.kill()
    pull.close(0)
    ctx.term()
    if phase < 2:
        raise RuntimeError("raw run ended early")
    wall = w1 - w0
    return {
        "samples_per_s": (c1 - c0) * n / wall,
        "msgs_per_s": (c1 - c0) / wall,
        "receiver_cpu": (cpu1 - cpu0) / wall,
    }


# ── our path: firehose agents → controller → spool ─────────────────────────────────────────


class FirehoseDriver:
    """Produces pre-built blocks whenever its agent's backlog is below ``max_backlog`` chunks."""

    # Up to the credit window (256) in flight plus a little queued: the rig is never the one
    # waiting unless acknowledgements (durability) lag.
    def __init__(self, n: int, max_backlog: int = 320) -> None:
        self.n = n
        self.max_backlog = max_backlog
        self.agent: RigAgent | None = None
        self.poses, self.analog, self.valid = sample_block(n)
        self._period = 0.001
        self._t0 = 0.0
        self._emitted = 0
        self._on = False

    def describe(self) -> DriverInfo:
        return DriverInfo(trackers=TRACKERS, rate_hz=1000.0)  # 1 kHz: chunks of up to 100

    def clock(self) -> float:
        return time.monotonic()

    def start(self, session: SessionContext, scene: dict[str, Any], params: dict[str, Any]) -> None:
        self._t0, self._emitted, self._on = time.monotonic(), 0, True

    def read(self, now: float) -> list[SampleBlock]:
        if not self._on or self.agent is None:
            return []
        k = self.max_backlog - self.agent.backlog_chunks
        out = []
        for _ in range(max(0, k)):
            out.append(
                SampleBlock(
                    self._t0 + self._emitted * self._period, self._period, self.poses, self.analog, self.valid
                )
            )
            self._emitted += self.n
        return out

    def on_cue(self, cue: P.Cue) -> None:
        pass

    def stop(self) -> None:
        self._on = False

    @property
    def finished(self) -> bool:
        return False


def _firehose_worker(control: str, prefix: str, rigs: int, n: int, stop_at: float,
                     coalesce: bool = False) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    agents = []
    for i in range(rigs):
        drv = FirehoseDriver(n)
        # coalesce=False (default): the chunks keep the size the raw baseline moves ("the same
        # bytes"); --coalesce: the agents join a backlog into chunks of up to 100 ms, as they do
        # in the field when the controller is behind (docs/protocol.md §20): catch-up speed
        cfg = AgentConfig(controller=control, rig_id=f"{prefix}-{i}", chunk_s=0.001,
                          coalesce=coalesce)
        agent = RigAgent(cfg, drv, ctx)
        drv.agent = agent
        agents.append(agent)
    group = AgentGroup(agents, freeze_gc=True)
    signal.signal(signal.SIGTERM, lambda *_: group.stop())
    import threading

    threading.Timer(max(0.0, stop_at - time.time()), group.stop).start()
    group.run()


class ControllerHarness:
    """The real controller with a spool sink, in this process, on free loopback ports."""

    def __init__(self, workdir: Path, window: int = P.DEFAULT_MAX_INFLIGHT_CHUNKS) -> None:
        c, d, a = free_ports(3)
        self.cfg = ControllerConfig(
            control_endpoint=f"tcp://127.0.0.1:{c}",
            data_endpoint=f"tcp://127.0.0.1:{d}",
            api_endpoint=f"tcp://127.0.0.1:{a}",
            max_inflight_chunks=window,
        )
        self.dir = workdir
        self.sink = SpoolSink(workdir / "spool")
        self.ctrl = Controller(self.cfg, self.sink)
        self.ctrl.start()
        self.api = ApiClient(self.cfg.api_endpoint, timeout_s=20.0)

    def durable_samples(self) -> int:
        return sum(d + 1 for d in self.sink.durable().values())

    def wait_rigs(self, prefix: str, count: int, timeout: float) -> list[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rows = self.api.request(P.ApiRigs()).data["rigs"]
            ids = [r["rig_id"] for r in rows if r["rig_id"].startswith(prefix) and r["alive"]]
            if len(ids) >= count:
                return sorted(ids)
            time.sleep(0.2)
        raise RuntimeError(f"only {len(ids)} of {count} rigs registered")

    def start_all(self, rig_ids: Sequence[str], retries: int = 3) -> tuple[list[str], list[str]]:
        """Start a session on every rig; (session ids, errors of starts that failed for good)."""
        sids, errors = [], []
        for rid in rig_ids:
            for attempt in range(retries):
                try:
                    rep = self.api.request(P.ApiSessionStart(rig_id=rid, exercise_id="bench", trainee="b"))
                    sids.append(rep.data["session"]["session_id"])
                    break
                except ApiError as exc:
                    if attempt == retries - 1:
                        errors.append(f"{rid}: {exc.code}: {exc}")
                    time.sleep(0.5)
        return sids, errors

    def stop_all(self, sids: Sequence[str]) -> None:
        for sid in sids:
            self.api.request(P.ApiSessionStop(session_id=sid, reason="bench over"))

    def sessions(self) -> dict[str, dict[str, Any]]:
        rows = self.api.request(P.ApiSessions(active_only=False)).data["sessions"]
        return {r["session_id"]: r for r in rows}

    def close(self) -> None:
        self.api.close()
        self.ctrl.stop()
        self.sink.close()


def ours_run(procs: int, rigs_per_proc: int, n: int, warmup: float, duration: float,
             coalesce: bool = False) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    h = ControllerHarness(work, window=256)  # firehose: a window that never limits the rate
    spawn = mp.get_context("spawn")
    prefix = f"fh{n}-{uuid.uuid4().hex[:4]}"
    stop_at = time.time() + 30 + warmup + duration
    workers = [
        spawn.Process(
            target=_firehose_worker,
            args=(h.cfg.control_endpoint, f"{prefix}-{j}", rigs_per_proc, n, stop_at, coalesce)
        )
        for j in range(procs)
    ]
    try:
        for w in workers:
            w.start()
        ids = h.wait_rigs(prefix, procs * rigs_per_proc, 30)
        h.start_all(ids)
        time.sleep(warmup)
        d0, w0, c0 = h.durable_samples(), time.monotonic(), time.process_time()
        time.sleep(duration)
        d1, w1, c1 = h.durable_samples(), time.monotonic(), time.process_time()
        status = h.ctrl.status()
        wall = w1 - w0
        return {
            "samples_per_s": (d1 - d0) / wall,
            "msgs_per_s": (d1 - d0) / wall / n,
            "controller_cpu": (c1 - c0) / wall,
            "bad_input": status["bad_input_total"],
            "commits": float(h.sink.commits),
        }
    finally:
        for w in workers:
            if w.pid:
                os.kill(w.pid, signal.SIGTERM)
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()
        h.close()
        shutil.rmtree(work, ignore_errors=True)


def throughput(
    chunks: Sequence[int], procs: int, rigs_per_proc: int, repeat: int, warmup: float, duration: float,
    coalesce: bool = False,
) -> None:
    for n in chunks:
        raws, ours, extra = [], [], []
        for _ in range(repeat):  # interleaved: raw, ours, raw, ours ...
            raws.append(raw_run(procs, n, warmup, duration)["samples_per_s"])
            o = ours_run(procs, rigs_per_proc, n, warmup, duration, coalesce)
            ours.append(o["samples_per_s"])
            extra.append(o)
        raw_m, ours_m = statistics.median(raws), statistics.median(ours)
        f0, f1 = chunk_frames(n)
        emit(
            bench="transport",
            part="throughput",
            chunk_samples=n,
            agents_coalesce=coalesce,
            chunk_bytes=len(f0) + len(f1),
            trackers=len(TRACKERS),
            procs=procs,
            rigs_per_proc=rigs_per_proc,
            raw_pushpull_samples_per_s=round(raw_m),
            ours_durable_samples_per_s=round(ours_m),
            ratio=round(ours_m / raw_m, 3),
            target_ratio=0.5,
            raw_runs=[round(x) for x in raws],
            ours_runs=[round(x) for x in ours],
            controller_cpu=round(statistics.median(e["controller_cpu"] for e in extra), 3),
            loadavg_1m=os.getloadavg()[0],
            bad_input=max(e["bad_input"] for e in extra),
            equivalent_rigs_120hz=round(ours_m / 120),
        )


# ── sustained real-time rigs ───────────────────────────────────────────────────────────────


def sustained(
    rigs: int, procs: int, warmup: float, duration: float, chunk_ms: float, window: int
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-sustained-"))
    h = ControllerHarness(work, window)
    prefix = f"rt{rigs}-{uuid.uuid4().hex[:4]}"
    per = [rigs // procs + (1 if j < rigs % procs else 0) for j in range(procs)]
    agents: list[subprocess.Popen[bytes]] = []
    try:
        for j, count in enumerate(per):
            if count == 0:
                continue
            agents.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "devices.agent",
                        "--controller",
                        h.cfg.control_endpoint,
                        "--rig-id",
                        f"{prefix}-{j}",
                        "--count",
                        str(count),
                        "--trackers",
                        TRACKER_ARG,
                        "--analog",
                        "",
                        "--rate",
                        "120",
                        "--chunk-ms",
                        str(chunk_ms),
                        "--seed",
                        str(1000 * j),
                    ],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        ids = h.wait_rigs(prefix, rigs, 60)
        t_start = time.monotonic()
        sids, start_errors = h.start_all(ids)
        start_s = time.monotonic() - t_start
        time.sleep(warmup)
        d0, w0, c0 = h.durable_samples(), time.monotonic(), time.process_time()
        r0 = sum(proc_cpu(a.pid) for a in agents)
        backlog0 = sum(r.get("backlog_chunks") or 0 for r in h.api.request(P.ApiRigs()).data["rigs"])
        lags = []
        end = w0 + duration
        while time.monotonic() < end:
            time.sleep(1.0)
            rows = h.sessions()
            produced = sum(max(0, r["received_seq"] + 1) for r in rows.values())
            lags.append(produced - h.durable_samples())
        d1, w1, c1 = h.durable_samples(), time.monotonic(), time.process_time()
        r1 = sum(proc_cpu(a.pid) for a in agents)
        wall = w1 - w0
        rigs_table = h.api.request(P.ApiRigs()).data["rigs"]
        backlog = sum(r.get("backlog_chunks") or 0 for r in rigs_table)
        t_stop = time.monotonic()
        h.stop_all(sids)
        complete = False
        rows = {}
        while time.monotonic() - t_stop < 60:
            rows = h.sessions()
            mine = [rows[s] for s in sids if s in rows]
            if all(r["state"] in ("finished", "aborted", "failed") for r in mine):
                complete = True
                break
            time.sleep(0.5)
        mine = [rows[s] for s in sids if s in rows]
        finished = sum(r["state"] == "finished" for r in mine)
        whole = sum(
            r["end_of_stream"] is not None
            and r["durable_seq"] == r["end_of_stream"]["last_seq"]
            and not r["open_gaps"]
            for r in mine
        )
        status = h.ctrl.status()
        offered = rigs * 120.0
        durable = (d1 - d0) / wall
        return {
            "bench": "transport",
            "part": "sustained",
            "rigs": rigs,
            "procs": len(agents),
            "hz": 120,
            "trackers": len(TRACKERS),
            "chunk_ms": chunk_ms,
            "window_chunks": window,
            "loadavg_1m": os.getloadavg()[0],
            "offered_samples_per_s": offered,
            "durable_samples_per_s": round(durable),
            "durable_over_offered": round(durable / offered, 4),
            "controller_cpu": round((c1 - c0) / wall, 3),
            "rigs_cpu": round((r1 - r0) / wall, 3),
            "lag_samples_max": max(lags) if lags else None,
            "lag_samples_last": lags[-1] if lags else None,
            "rig_backlog_chunks_start": backlog0,
            "rig_backlog_chunks_end": backlog,
            "start_all_s": round(start_s, 2),
            "start_failures": len(start_errors),
            "start_errors": start_errors[:3],
            "dead_detections": len(status["dead_detections"]),
            "sessions_finished": finished,
            "sessions_complete_no_gap": whole,
            "stop_drained": complete,
            "stop_drain_s": round(time.monotonic() - t_stop, 2),
            "gaps": sum(r["gaps"] for r in mine),
            "duplicates": sum(r["duplicates"] for r in mine),
            "bad_input": status["bad_input_total"],
            # Sustained: (nearly) everything offered became durable during the window, the rigs'
            # unacknowledged backlog did not grow by more than 0.5 s of data, and after STOP every
            # session is complete and gap-free.
            "sustained": bool(
                durable >= 0.97 * offered
                and backlog - backlog0 <= rigs * 0.5 * 1000 / chunk_ms
                and whole == rigs
                and complete
                and not start_errors
            ),
        }
    finally:
        for a in agents:
            a.send_signal(signal.SIGTERM)
        for a in agents:
            try:
                a.wait(15)
            except subprocess.TimeoutExpired:
                a.kill()
        h.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test, ~1 min)")
    ap.add_argument("--chunks", default="3,32", help="samples per chunk for the throughput part")
    ap.add_argument("--rigs", default="100,200,300,400", help="real-time rig counts to sustain")
    ap.add_argument("--procs", type=int, default=4, help="rig processes (sustained part)")
    ap.add_argument("--tp-procs", type=int, default=2, help="sender processes (throughput part)")
    ap.add_argument("--rigs-per-proc", type=int, default=4, help="firehose rigs per process")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="real-time rigs' chunk length")
    ap.add_argument(
        "--window",
        type=int,
        default=P.DEFAULT_MAX_INFLIGHT_CHUNKS,
        help="credit window (chunks) the controller announces (sustained part)",
    )
    ap.add_argument("--coalesce", action="store_true",
                    help="throughput part: agents join their backlog into chunks of up to 100 ms "
                         "(their field behaviour when behind); the raw baseline keeps the given "
                         "chunk size. Measures catch-up speed, not the like-for-like ratio")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-sustained", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.repeat = 3.0, 1.5, 1
        args.rigs = "50"
    emit(
        bench="transport",
        part="machine",
        cpus=os.cpu_count(),
        python=sys.version.split()[0],
        loadavg_1m=os.getloadavg()[0],
        zmq=zmq.zmq_version(),
        pyzmq=zmq.__version__,
        sink="lab_controller.controller.SpoolSink",
        controller="lab_controller.controller.Controller",
    )
    if not args.skip_throughput:
        throughput(
            [int(x) for x in args.chunks.split(",")],
            args.tp_procs,
            args.rigs_per_proc,
            args.repeat,
            args.warmup,
            args.duration,
            args.coalesce,
        )
    if not args.skip_sustained:
        for n in (int(x) for x in args.rigs.split(",")):
            result = sustained(n, args.procs, args.warmup, args.duration, args.chunk_ms, args.window)
            emit(**result)
            if not result["sustained"]:
                break


if __name__ == "__main__":
    main()
