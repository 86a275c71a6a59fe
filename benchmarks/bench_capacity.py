"""Capacity of one lab machine: how many simulated rigs the whole pipeline carries.

Ramps the number of simulated rigs (120 Hz × 6 trackers by default: the six
``devices.sim.trainee.LOAD_TEST_TRACKERS``; ``DEFAULT_TRACKERS`` is the 3-tracker demo rig)
through the real pipeline — rig agents (``devices.agent.AgentGroup`` in worker processes on
this machine) → ``Controller`` → ``LabPipeline`` (scoring kernels per session, telemetry
writer) → TimescaleDB (a throw-away ``ManagedCluster``) — and, side by side at every step in
the same run, the same rigs through cheaper configurations ("modes"):

* ``transport``: the controller with a ``MemorySink`` and no observer (kernels and database
  off; the baseline every ratio is against);
* ``db``: ``LabPipeline(scoring=False)``: transport + telemetry writer + TimescaleDB;
* ``full``: ``LabPipeline`` as ``labctl demo`` wires it: transport + kernels + database.

Per step and mode one JSON line (stdout): samples/s offered by the rigs, received and made
durable by the controller; cue latency; acknowledgement lag; CPU per process and per
controller thread; rig backlog; and the loss check after every session ended (stored =
declared by each rig's END_OF_STREAM, like the demo's data-quality line). A readable table
goes to stderr at the end. The result is the highest rig count whose ``full`` step passes:
cue p99 < 20 ms, zero loss, durable ≥ 98 % of offered and no growing backlog. The ramp stops
at the first failing ``full`` step.

What the latencies are (measured in the rig worker processes, one clock each):

* ``cue_ms`` (the pass criterion, "rig send → cue received"): from the moment the agent read
  the chunk the cue refers to (``Cue.ref_seq``) from its driver — it sends it in the same
  tick unless its credit window is full, see ``window_full`` — to the moment the cue reached
  the driver's ``on_cue`` (host monotonic clock).
* ``cue_sample_ms``: what ``devices.agent`` records in ``RigAgent.cue_latencies``: rig clock
  at cue arrival − ``Cue.ref_rig_time`` (the rig time of the sample the scorer's event row
  came from). It adds the chunking delay (a sample waits up to one chunk interval, 20 ms,
  before it is sent) and the metric's own lag to ``cue_ms``.
* ``cue_return_ms``: ``Cue.controller_time`` (controller wall clock just before the send) to
  the cue's arrival at the driver (same host, same wall clock): the way back, including the
  time the rig worker's loop needs to get to the cue. ``controller_cue_ms`` is the controller's
  own figure (chunk arrival → cue sent, ``Controller.status()``, last 10k cues of the run).
* ``ack_lag_ms``: sampled at every driver read (every chunk interval, every rig): age of the
  oldest sample read from the driver but not yet covered by a DATA_ACK (0 when all is acked).

Usage::

    .venv/bin/python benchmarks/bench_capacity.py                       # 25..300 rigs
    .venv/bin/python benchmarks/bench_capacity.py --steps 50,100 --duration 10 --warmup 3
    .venv/bin/python benchmarks/bench_capacity.py --steps 50 --modes full --rate 90 --trackers 3
    .venv/bin/python benchmarks/bench_capacity.py --quick                # smoke test, ~1 min

``--dsn`` uses an existing (throw-away!) database instead of a managed cluster: its telemetry
tables are truncated before every run.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import gc
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devices.fleet import FleetSpec, spec_from_json  # noqa: E402
from devices.sim.rig import SimulatedRig  # noqa: E402
from devices.sim.trainee import DEFAULT_TRACKERS, LOAD_TEST_TRACKERS  # noqa: E402
from lab_controller import protocol as P  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
EXERCISE = "fillet_t_joint_h"
# Sessions of this exercise last ≥ 21.6 s for the fastest simulated novice (measured over 12
# seeds per skill; experts ~31 s), so warm-up + window must stay below ~20 s or some rigs
# finish inside the window (offered load is measured either way, never assumed).
DEFAULT_STEPS = "25,50,100,150,200,250,300"
CUE_P99_TARGET_MS = 20.0  # performance.md: whole pipeline, cue p99 < 20 ms
# durable/offered in the window below this = not keeping up (2 % allows for the 1 s report
# granularity of the offered count on a noisy machine; a real deficit also grows the backlog)
STORED_FRACTION_MIN = 0.98
# "Growing backlog": the least-squares trend of the rigs' unacknowledged chunks over the window
# adds up to more than 5 chunks (100 ms of data) per rig. Ack-lag swings on a loaded machine
# move the backlog by a few chunks per rig either way; a 2 % throughput deficit adds ~15.
BACKLOG_GROWTH_MAX_CHUNKS_PER_RIG = 5
# Latency histograms: 50 log bins per decade (4.7 % wide), from 10 µs; a percentile is
# reported as its bin's upper edge (conservative by at most 4.7 %).
BINS_PER_DECADE = 50
TELEMETRY_TABLES = ("pose_frames", "pose_rate_1s", "ingest_ranges", "score_windows",
                    "score_window_params", "cues", "session_events", "ops_metrics",
                    "result_metrics", "results", "sessions")


# --observer-thread: scoring on its own thread (ControllerConfig.observer_thread), for A/B runs
OBSERVER_THREAD = False
# --profile-idle: py-spy samples waiting threads too (where a latency goes), not only the GIL
PROFILE_IDLE = False
# --rig-nice: nice increment of the rig worker processes (the load generator), None: inherit
RIG_NICE: int | None = None
# --gc-threshold: the controller's gc.set_threshold() (None: ControllerConfig's default)
GC_THRESHOLDS: tuple[int, int, int] | None = None
RIG_SEND_EVERY: int | None = None  # --rig-send-every
INFLIGHT_CHUNKS: int | None = None  # --inflight-chunks
# The controller's GIL switch interval (ControllerConfig; --switch-interval overrides it).
GIL_SWITCH_S: float | None = None  # None: ControllerConfig's default

def emit(rec: dict[str, Any]) -> None:
    print(json.dumps(rec, sort_keys=True), flush=True)


# ════════════════════════════════════════════════════════════════ latency histograms


def hbin(ms: float) -> int:
    return math.floor(math.log10(max(ms, 0.01)) * BINS_PER_DECADE)


def hist_add(into: dict[int, int], other: dict[Any, int]) -> None:
    for k, v in other.items():
        into[int(k)] = into.get(int(k), 0) + int(v)


def hist_pct(h: dict[int, int], q: float) -> float | None:
    """q-quantile (0..1) as the upper edge of its bin, ms; None for an empty histogram."""
    n = sum(h.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    acc = 0
    for k in sorted(h):
        acc += h[k]
        if acc >= rank:
            return round(10 ** ((k + 1) / BINS_PER_DECADE), 2)
    return None


def hist_summary(h: dict[int, int]) -> dict[str, Any]:
    return {"n": sum(h.values()), "p50": hist_pct(h, 0.5), "p99": hist_pct(h, 0.99),
            "max": hist_pct(h, 1.0)}


# ════════════════════════════════════════════════════════════════ rig worker process


class _Hists:
    """Per-process latency histograms, swapped out by the reporter thread."""

    NAMES = ("cue", "cue_sample", "cue_return", "ack_lag")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.h: dict[str, dict[int, int]] = {n: {} for n in self.NAMES}

    def add(self, name: str, ms: float) -> None:
        b = hbin(ms)
        with self.lock:
            d = self.h[name]
            d[b] = d.get(b, 0) + 1

    def take(self) -> dict[str, dict[int, int]]:
        with self.lock:
            out, self.h = self.h, {n: {} for n in self.NAMES}
        return out


class TimedRig(SimulatedRig):
    """`SimulatedRig` that remembers when each sample was read (its public driver methods only).

    The agent numbers samples from 0 per session in read order, so the running count of
    samples read since `start` is the sequence number; `on_cue` finds the read time of the
    cue's `ref_seq` and the ack lag is sampled from the agent's active stream at every 4th read.
    """

    KEEP = 4096  # read records kept (≈ 80 s at one read per 20 ms)

    def __init__(self, hists: _Hists, **kw: Any) -> None:
        super().__init__(**kw)
        self.hists = hists
        self.agent: Any = None  # set after the agent is built
        self._ends: list[int] = []  # cumulative samples after each read
        self._times: list[float] = []  # monotonic time of that read
        self._count = 0
        self._reads = 0

    def start(self, session: Any, scene: dict[str, Any], params: dict[str, Any]) -> None:
        super().start(session, scene, params)
        self._ends, self._times, self._count = [], [], 0

    def _read_time(self, seq: int) -> float | None:
        i = bisect.bisect_right(self._ends, seq)
        return self._times[i] if i < len(self._times) else None

    def read(self, now: float) -> Sequence[Any]:
        blocks = super().read(now)
        t = time.monotonic()
        n = sum(b.count for b in blocks)
        if n:
            self._count += n
            self._ends.append(self._count)
            self._times.append(t)
            if len(self._ends) > 2 * self.KEEP:
                del self._ends[: self.KEEP], self._times[: self.KEEP]
        self._reads += 1
        if self._reads & 3:
            return blocks  # ack lag sampled every 4th read (~12 per rig-second): bench overhead
        stream = getattr(self.agent, "active", None)
        if stream is not None and self._count:
            oldest = int(stream.durable_seq) + 1
            if oldest >= self._count:
                self.hists.add("ack_lag", 0.0)
            else:
                rt = self._read_time(oldest)
                if rt is not None:
                    self.hists.add("ack_lag", 1000.0 * (t - rt))
        return blocks

    def on_cue(self, cue: P.Cue) -> None:
        t, rig_now, wall = time.monotonic(), self.clock(), time.time()
        super().on_cue(cue)
        # same host, same wall clock: controller send → here (transport back + rig loop delay)
        self.hists.add("cue_return", 1000.0 * (wall - cue.controller_time))
        if cue.ref_seq >= 0:
            rt = self._read_time(cue.ref_seq)
            if rt is not None:
                self.hists.add("cue", 1000.0 * (t - rt))
        if cue.ref_rig_time is not None:
            self.hists.add("cue_sample", 1000.0 * (rig_now - cue.ref_rig_time))


def run_worker(spec: FleetSpec, first: int, stop: int, report_s: float,
               send_every: int | None = None) -> None:
    """Serve rigs [first, stop) like `devices.fleet.run_worker`, with timed drivers."""
    from devices.agent import AgentConfig, AgentGroup, RigAgent
    from devices.sim.rig import warmup
    from lab_controller.exercises import scene_for

    warmup([scene_for(EXERCISE)], spec.trackers)  # compiled before the rigs register
    hists = _Hists()
    ctx: zmq.Context[Any] = zmq.Context.instance()
    ids, skills = spec.rig_ids(), spec.skills()
    agents = []
    for i in range(first, stop):
        driver = TimedRig(hists, skill=skills[i], trackers=spec.trackers, rate_hz=spec.rate_hz,
                          seed=spec.seed * 100_003 + i)
        cfg = AgentConfig(controller=spec.controller, rig_id=ids[i], site_id=spec.site_id,
                          data_endpoint=spec.data_endpoint, chunk_s=spec.chunk_s,
                          software_version=f"sim/{skills[i]}")
        agent = RigAgent(cfg, driver, ctx)
        driver.agent = agent
        agents.append(agent)
    group = (AgentGroup(agents, freeze_gc=True) if send_every is None
             else AgentGroup(agents, freeze_gc=True, send_every=send_every))
    signal.signal(signal.SIGTERM, lambda *_: group.stop())
    signal.signal(signal.SIGINT, lambda *_: group.stop())
    parent = os.getppid()

    def report() -> None:
        while not group._stop.wait(report_s):
            if os.getppid() != parent:  # the benchmark died: do not linger
                group.stop()
            total: dict[str, int] = {}
            for a in agents:
                for k, v in a.stats.items():
                    total[k] = total.get(k, 0) + v
            backlog = [a.backlog_chunks for a in agents]
            print(json.dumps({
                "t": time.time(), "pid": os.getpid(), "rigs": len(agents),
                "registered": sum(a.registered for a in agents),
                "running": sum(a.active is not None for a in agents),
                "backlog_chunks": sum(backlog), "backlog_max": max(backlog, default=0),
                "stats": total, "hists": hists.take(),
            }), flush=True)

    threading.Thread(target=report, daemon=True).start()
    group.run()


# ════════════════════════════════════════════════════════════════ CPU accounting (/proc)


def _stat_cpu(path: str) -> float | None:
    try:
        with open(path, encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime (fields 14, 15)


def proc_cpu(pid: int) -> float:
    return _stat_cpu(f"/proc/{pid}/stat") or 0.0


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def children_of(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]


def machine_busy() -> tuple[float, float, float]:
    """(busy, total, steal) seconds of all CPUs since boot, from /proc/stat. Busy counts steal:
    time the hypervisor gave our virtual CPUs to someone else."""
    with open("/proc/stat", encoding="ascii") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / TICK, sum(vals) / TICK, vals[7] / TICK


def run_delay(tid: int, path: str = "/proc/self/task/{}/schedstat") -> float:
    """Seconds thread `tid` of this process (or, with `path`, another task) has spent runnable
    but waiting for a CPU."""
    try:
        with open(path.format(tid), encoding="ascii") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def thread_names() -> dict[int, str]:
    """tid → name for this process's threads (Python name, else the OS name, e.g. ZMQbg/IO/0)."""
    py = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out = {}
    for tid in (int(x) for x in os.listdir("/proc/self/task")):
        name = py.get(tid)
        if name is None:
            try:
                with open(f"/proc/self/task/{tid}/comm", encoding="ascii") as fh:
                    name = fh.read().strip()
            except OSError:
                continue
        out[tid] = name
    return out


def thread_stage(name: str) -> str:
    """Which pipeline stage a controller-process thread belongs to."""
    if name == "controller":
        return "ctrl_loop"
    if name == "observers":
        return "kernels"
    if name in ("telemetry-writer", "spool-sink"):
        return "writer"
    if name.startswith("ZMQbg"):
        return "zmq_io"
    return "other"


@dataclass
class CpuSnap:
    wall: float
    threads: dict[int, float]
    rigs: dict[int, float]
    pg: dict[int, float]
    busy: float
    total: float
    steal: float
    waits: dict[int, float]  # controller thread → run delay (schedstat)
    pg_waits: dict[int, float]  # postgres process → run delay


def cpu_snap(ctrl_tids: Sequence[int], rig_pids: Sequence[int], pg_root: int | None) -> CpuSnap:
    threads = {t: _stat_cpu(f"/proc/self/task/{t}/stat") or 0.0 for t in ctrl_tids}
    pg: dict[int, float] = {}
    if pg_root is not None:
        for p in [pg_root, *children_of(pg_root)]:
            pg[p] = proc_cpu(p)
    busy, total, steal = machine_busy()
    return CpuSnap(time.monotonic(), threads, {p: proc_cpu(p) for p in rig_pids}, pg, busy, total,
                   steal, {t: run_delay(t) for t in ctrl_tids},
                   {p: run_delay(p, "/proc/{}/schedstat") for p in pg})


def cpu_delta(a: CpuSnap, b: CpuSnap, names: dict[int, str]) -> dict[str, float]:
    """Cores used per stage between two snapshots (CPU seconds / wall second)."""
    wall = b.wall - a.wall
    out: dict[str, float] = {}
    for tid, c in b.threads.items():
        st = thread_stage(names.get(tid, "?"))
        out[st] = out.get(st, 0.0) + (c - a.threads.get(tid, c)) / wall
    out["ctrl_process"] = sum(out.values())
    per_proc = [(c - a.rigs.get(p, 0.0)) / wall for p, c in b.rigs.items()]
    out["rigs"] = sum(per_proc)
    out["rigs_max_proc"] = max(per_proc, default=0.0)
    # a backend that appeared inside the window counts with all of its CPU (it is young)
    out["postgres"] = sum(c - a.pg.get(p, 0.0) for p, c in b.pg.items()) / wall
    out["total_ours"] = out["ctrl_process"] + out["rigs"] + out["postgres"]
    ncpu = os.cpu_count() or 1
    out["machine"] = ncpu * (b.busy - a.busy) / max(1e-9, b.total - a.total)
    out["others"] = max(0.0, out["machine"] - out["total_ours"])
    out["steal"] = ncpu * (b.steal - a.steal) / max(1e-9, b.total - a.total)
    # the loop thread's wait for a CPU while runnable (fraction of the window): OS scheduling
    # and every other stage's (summed over its threads/processes: cores' worth of waiting)
    for tid, w in b.waits.items():
        st = thread_stage(names.get(tid, "?"))
        key = "ctrl_loop_run_delay" if st == "ctrl_loop" else f"run_delay_{st}"
        out[key] = out.get(key, 0.0) + (w - a.waits.get(tid, w)) / wall
    out["run_delay_postgres"] = sum(w - a.pg_waits.get(p, w) for p, w in b.pg_waits.items()) / wall
    return {k: round(v, 3) for k, v in out.items()}


# ════════════════════════════════════════════════════════════════ one run


@dataclass
class RunSpec:
    mode: str  # transport | db | full
    rigs: int
    rate_hz: float
    trackers: tuple[str, ...]
    warmup_s: float
    duration_s: float
    rig_procs: int
    chunk_s: float
    seed: int = 0
    realtime: int | None = None  # ControllerConfig.realtime_priority
    rig_rt: int = 0  # SCHED_RR priority of the rig workers (0: normal)


@dataclass
class _FleetReports:
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_pid: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def read(self, pid: int, stream: Any) -> None:
        for line in stream:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.by_pid.setdefault(pid, []).append(rec)

    def latest(self) -> dict[int, dict[str, Any]]:
        with self.lock:
            return {p: r[-1] for p, r in self.by_pid.items() if r}

    def window(self, w0: float, w1: float) -> dict[str, Any]:
        """Offered rate, stat deltas, histograms and backlog trend between wall times w0, w1."""
        hists: dict[str, dict[int, int]] = {n: {} for n in _Hists.NAMES}
        produced = sent = 0
        span = 0.0
        stats: dict[str, int] = {}
        b_first = b_last = 0
        slope = 0.0  # chunks/s: sum over workers of the least-squares slope of their backlog
        with self.lock:
            reports = {p: list(r) for p, r in self.by_pid.items()}
        for recs in reports.values():
            inside = [r for r in recs if w0 <= r["t"] <= w1]
            before = [r for r in recs if r["t"] < w0]
            if not inside:
                continue
            start = before[-1] if before else inside[0]
            end = inside[-1]
            for r in inside:
                if r is start:
                    continue
                for n, h in r["hists"].items():
                    hist_add(hists[n], h)
            produced += end["stats"]["samples_produced"] - start["stats"]["samples_produced"]
            sent += end["stats"]["samples_sent"] - start["stats"]["samples_sent"]
            span = max(span, end["t"] - start["t"])
            for k, v in end["stats"].items():
                stats[k] = stats.get(k, 0) + v - start["stats"].get(k, 0)
            b_first += start["backlog_chunks"]
            b_last += end["backlog_chunks"]
            if len(inside) >= 3:
                ts = [r["t"] for r in inside]
                bs = [r["backlog_chunks"] for r in inside]
                tm, bm = sum(ts) / len(ts), sum(bs) / len(bs)
                var = sum((t - tm) ** 2 for t in ts)
                if var > 0:
                    slope += sum((t - tm) * (b - bm) for t, b in zip(ts, bs, strict=True)) / var
        return {"hists": hists, "produced": produced, "sent": sent, "span": span,
                "stats": stats, "backlog_first": b_first, "backlog_last": b_last,
                "backlog_slope": slope}


class Bench:
    """Shared state of one benchmark invocation: the database and the temporary directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
        os.chmod(self.tmp, 0o755)  # as root the server runs as `postgres` (tests/conftest.py)
        self.cluster: Any = None
        self.dsn: str | None = args.dsn
        self.pg_root: int | None = None
        self.prepared_rigs = 0

    def close(self) -> None:
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def database(self, rig_ids: list[str], trainees: list[str]) -> str:
        """DSN of the throw-away database with site, class, rigs, trainees, exercise, rubric."""
        from lab_controller.demo import DemoOptions, prepare_database
        from telemetry.cluster import ManagedCluster

        if self.dsn is None:
            self.cluster = ManagedCluster(self.tmp / "pg")
            st = self.cluster.start()
            self.pg_root = st.pid
            self.dsn = self.cluster.create_database("capacity")
        if len(rig_ids) > self.prepared_rigs:
            opts = DemoOptions(rigs=len(rig_ids), exercise=EXERCISE)
            prepare_database(self.dsn, opts, trainees, rig_ids)
            self.prepared_rigs = len(rig_ids)
        return self.dsn

    def truncate(self) -> None:
        import psycopg

        assert self.dsn is not None
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE " + ", ".join(TELEMETRY_TABLES) + " CASCADE")

    def stored_per_session(self) -> dict[str, tuple[int, int, int]]:
        """session id → (rows, min seq, max seq) in pose_frames."""
        import psycopg

        assert self.dsn is not None
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute("SELECT session_id, count(*), min(seq), max(seq) FROM pose_frames "
                                "GROUP BY session_id").fetchall()
        return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def _sessions_terminal(ctrl: Any, sids: Sequence[str]) -> bool:
    for sid in sids:
        s = ctrl.sessions.get(sid)
        if s is not None and s.active:
            return False
    return True


@contextlib.contextmanager
def _workers(spec: FleetSpec, report_s: float, reports: _FleetReports, rig_rt: int = 0
             ) -> Iterator[list[subprocess.Popen[str]]]:
    payload = json.dumps({**asdict(spec), "trackers": list(spec.trackers)})
    procs: list[subprocess.Popen[str]] = []
    try:
        for share in spec.shares():
            p = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", "--spec", payload,
                 "--first", str(share.start), "--stop", str(share.stop),
                 "--report-s", str(report_s),
                 *([] if RIG_NICE is None else ["--rig-nice", str(RIG_NICE)]),
                 *([] if RIG_SEND_EVERY is None else ["--rig-send-every", str(RIG_SEND_EVERY)]),
                 *(["--rig-rt", str(rig_rt)] if rig_rt else [])],
                stdout=subprocess.PIPE, text=True, cwd=ROOT)
            procs.append(p)
            threading.Thread(target=reports.read, args=(p.pid, p.stdout), name="fleet-reader",
                             daemon=True).start()
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_once(bench: Bench, rs: RunSpec) -> dict[str, Any]:
    """One step of one mode: start everything, launch the class, measure, stop, account."""
    from lab_controller.controller import ApiClient, Controller, ControllerConfig, MemorySink
    from lab_controller.controller.launch import health_check
    from lab_controller.exercises import scene_for

    rig_prefix = "cap"
    spec = FleetSpec(controller="", count=rs.rigs, trackers=rs.trackers, rate_hz=rs.rate_hz,
                     seed=rs.seed, rig_prefix=rig_prefix, processes=rs.rig_procs,
                     chunk_s=rs.chunk_s, site_id="site-01")
    rig_ids = spec.rig_ids()
    trainees = [f"C-{i + 1:03d}" for i in range(rs.rigs)]
    before = set(thread_names())
    pipeline: Any = None
    sink: Any
    observers: list[Any] = []
    event_sink: Any = None
    if rs.mode == "transport":
        sink = MemorySink()
    else:
        from lab_controller.pipeline import LabPipeline
        from telemetry.writer import WriterConfig

        dsn = bench.database(rig_ids, trainees)
        bench.truncate()
        run_dir = bench.tmp / f"run-{uuid.uuid4().hex[:8]}"
        pipeline = LabPipeline(dsn, WriterConfig(site_id="site-01", spool_dir=run_dir / "spool"),
                               scoring=rs.mode == "full")
        pipeline.start()
        sink, observers, event_sink = pipeline.sink, [pipeline.observer], pipeline.on_event
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*",
                           site_id="site-01")
    if GIL_SWITCH_S is not None:
        cfg = dataclasses.replace(cfg, gil_switch_interval_s=GIL_SWITCH_S)
    if OBSERVER_THREAD:
        cfg = dataclasses.replace(cfg, observer_thread=True)
    if GC_THRESHOLDS is not None:
        cfg = dataclasses.replace(cfg, gc_thresholds=GC_THRESHOLDS)
    if rs.realtime:
        cfg = dataclasses.replace(cfg, realtime_priority=rs.realtime)
    if INFLIGHT_CHUNKS is not None:
        cfg = dataclasses.replace(cfg, max_inflight_chunks=INFLIGHT_CHUNKS)
    ctrl = Controller(cfg, sink, observers=observers, event_sink=event_sink)
    ctrl.start()
    names = thread_names()
    ctrl_tids = [t for t in names if t not in before]
    api = ApiClient(ctrl.endpoints["api"], timeout_s=60.0)
    spec = FleetSpec(**{**asdict(spec), "controller": ctrl.endpoints["control"],
                        "data_endpoint": ctrl.endpoints["data"], "trackers": rs.trackers})
    reports = _FleetReports()
    out: dict[str, Any] = {"bench": "capacity", "mode": rs.mode, "rigs": rs.rigs,
                           "rate_hz": rs.rate_hz, "trackers": len(rs.trackers),
                           "chunk_ms": round(1000 * rs.chunk_s, 1), "rig_procs": rs.rig_procs,
                           "speed_probe_ms": speed_probe(),
                           "controller_rt": rs.realtime if ctrl.realtime else 0,
                           "rig_rt": rs.rig_rt}
    sids: list[str] = []
    try:
        with _workers(spec, bench.args.report_s, reports, rs.rig_rt) as procs:
            t_reg = time.monotonic()
            pending = rig_ids
            while pending and time.monotonic() - t_reg < 120:
                pending = [r for r in rig_ids if not health_check(ctrl, r).ok]
                time.sleep(0.2)
            out["register_s"] = round(time.monotonic() - t_reg, 2)
            if pending:
                raise RuntimeError(f"{len(pending)} rigs not ready after 120 s")
            t_launch = time.monotonic()
            reply = api.request(P.ApiClassLaunch(
                exercise_id=EXERCISE, rigs=rig_ids, trainees=trainees,
                params={"scene": scene_for(EXERCISE), "class_id": "capacity"}), timeout_s=120)
            out["launch_s"] = round(time.monotonic() - t_launch, 3)
            data = reply.data
            sids = [r["session_id"] for r in data.get("results", []) if r.get("session_id")]
            out["started"] = int(data.get("started", 0))
            out["start_spread_ms"] = round(1000 * float(data.get("start_spread_s", 0.0)), 1)
            if pipeline is None:
                trim = threading.Event()

                def trim_memory() -> None:  # MemorySink keeps every chunk: drop them as we go
                    while not trim.wait(0.5):
                        sink.chunks.clear()

                threading.Thread(target=trim_memory, name="bench-trim", daemon=True).start()
            time.sleep(rs.warmup_s)
            rig_pids = [p.pid for p in procs]
            pg_root = bench.pg_root if pipeline is not None else None
            spies = _profilers(bench.args.profile, rs, rig_pids)
            w0 = time.time()
            GC_PAUSES.take()
            c0 = cpu_snap(ctrl_tids, rig_pids, pg_root)
            durable0, received0 = _durable_total(sink), _received_total(ctrl)
            held_max = queue_max = 0
            end = time.monotonic() + rs.duration_s
            while time.monotonic() < end:
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
                st = ctrl.status()
                held_max = max(held_max, int(st["held_chunks"]))
                queue_max = max(queue_max, int(st.get("sink", {}).get("queue_rows", 0) or 0))
            c1 = cpu_snap(ctrl_tids, rig_pids, pg_root)
            out["gc_pauses_in_window"] = GC_PAUSES.take()
            durable1, received1 = _durable_total(sink), _received_total(ctrl)
            for spy in spies:
                spy.wait(30)
            w1 = time.time()
            wall = c1.wall - c0.wall
            status = ctrl.status()
            win = reports.window(w0, w1)
            offered = win["produced"] / win["span"] if win["span"] > 0 else 0.0
            out.update({
                "window_s": round(wall, 2),
                "offered_samples_per_s": round(offered),
                "nominal_samples_per_s": round(rs.rigs * rs.rate_hz),
                "received_samples_per_s": round((received1 - received0) / wall),
                "durable_samples_per_s": round((durable1 - durable0) / wall),
                "durable_over_offered": round((durable1 - durable0) / wall / offered, 4)
                if offered else None,
                "cue_ms": hist_summary(win["hists"]["cue"]),
                "cue_sample_ms": hist_summary(win["hists"]["cue_sample"]),
                "cue_return_ms": hist_summary(win["hists"]["cue_return"]),
                "ack_lag_ms": hist_summary(win["hists"]["ack_lag"]),
                "controller_cue_ms": status["cue_latency_ms"],
                "controller_observer_wait_ms": status.get("observer_wait_ms"),
                "controller_cue_compute_ms": status.get("cue_compute_ms"),
                "controller_loop_round_ms": status.get("loop_round_ms"),
                "controller_chunks_per_round": status.get("chunks_per_round"),
                "cpu_cores": cpu_delta(c0, c1, names),
                "rig_backlog_chunks": {"start": win["backlog_first"], "end": win["backlog_last"],
                                       "trend_per_s": round(win["backlog_slope"], 2)},
                "samples_per_chunk": round(win["stats"].get("samples_sent", 0)
                                           / max(1, win["stats"].get("chunks_sent", 0)), 2),
                "acks_per_s": round(win["stats"].get("acks", 0) / max(1e-9, win["span"])),
                "window_full": win["stats"].get("window_full", 0),
                "chunks_resent": win["stats"].get("chunks_resent", 0),
                "held_chunks_max": held_max,
                "writer_queue_rows_max": queue_max,
                "sessions_running_at_end": sum(r.get("running", 0)
                                               for r in reports.latest().values()),
            })
            # every session ends normally; then nothing may be missing
            t_stop = time.monotonic()
            for sid in sids:
                with contextlib.suppress(Exception):
                    api.request(P.ApiSessionStop(session_id=sid, reason="capacity step over"),
                                timeout_s=20)
            while time.monotonic() - t_stop < 90 and not _sessions_terminal(ctrl, sids):
                time.sleep(0.2)
            out["drain_s"] = round(time.monotonic() - t_stop, 2)
            time.sleep(1.5 * bench.args.report_s)  # a last report with the final counters
            final = reports.latest()
    finally:
        api.close()
        ctrl.stop()
        if pipeline is not None:
            pipeline.close(timeout=120.0)
    out.update(_loss(bench, ctrl, sink, sids, final, stored_in_db=pipeline is not None))
    if pipeline is not None:
        out["writer"] = {k: v for k, v in vars(pipeline.writer.stats()).items()
                         if k in ("rows_written", "rows_deduplicated", "transactions",
                                  "spooled_records", "outages", "rejected_records")}
        out["dropped_records"] = pipeline.dropped_records
    out.update(_verdict(out))
    return out


def _profilers(directory: str | None, rs: RunSpec, rig_pids: Sequence[int]
               ) -> list[subprocess.Popen[bytes]]:
    """py-spy (if asked for) on this process (the controller) and the first rig worker for the
    measured window; collapsed stacks per thread in DIRECTORY/<who>-<mode>-<rigs>.txt."""
    if not directory:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    Path(directory).mkdir(parents=True, exist_ok=True)
    out = []
    for who, pid in (("controller", os.getpid()), ("rigs", rig_pids[0])):
        path = Path(directory) / f"{who}-{rs.mode}-{rs.rigs}.txt"
        out.append(subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(rs.duration_s))),
             "--rate", "100", "--format", "raw", "--threads", "--nonblocking", "--output",
             str(path), *(["--gil"] if who == "controller" and not PROFILE_IDLE else []),
             *(["--idle"] if PROFILE_IDLE else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return out


def _durable_total(sink: Any) -> int:
    return sum(d + 1 for d in sink.durable().values())


def _received_total(ctrl: Any) -> int:
    for _ in range(5):
        try:
            return sum(s.samples for s in list(ctrl.seq.values()))
        except RuntimeError:  # the loop thread added a session meanwhile
            time.sleep(0.01)
    return 0


def _loss(bench: Bench, ctrl: Any, sink: Any, sids: Sequence[str],
          final: dict[int, dict[str, Any]], stored_in_db: bool) -> dict[str, Any]:
    """Declared (END_OF_STREAM) vs received vs durable vs stored, per session and in total."""
    durable = sink.durable()
    stored = bench.stored_per_session() if stored_in_db else {}
    declared = received = stored_total = 0
    bad: list[dict[str, Any]] = []
    states: dict[str, int] = {}
    for sid in sids:
        s = ctrl.sessions.get(sid)
        row = ctrl.session_row(s) if s is not None else {}
        state = str(row.get("state", "missing"))
        states[state] = states.get(state, 0) + 1
        eos = row.get("end_of_stream") or {}
        d = int(eos.get("last_seq", -1)) + 1
        r = int(row.get("samples", 0))
        if stored_in_db:
            n, lo, hi = stored.get(sid, (0, 0, -1))
            ok = n == d and (d == 0 or (lo == 0 and hi == d - 1))
        else:
            n = durable.get(sid, -1) + 1
            ok = n == d
        ok = ok and state == "finished" and r == d and not row.get("open_gaps")
        declared, received, stored_total = declared + d, received + r, stored_total + n
        if not ok and len(bad) < 5:
            bad.append({"session_id": sid, "state": state, "declared": d, "received": r,
                        "stored": n, "reason": row.get("reason")})
    produced = sum(int(r["stats"].get("samples_produced", 0)) for r in final.values())
    sent_total = sum(int(r["stats"].get("samples_sent", 0)) for r in final.values())
    return {"sessions": len(sids), "session_states": states,
            "samples_produced_by_rigs": produced, "samples_sent_by_rigs": sent_total,
            "samples_declared": declared, "samples_received": received,
            "samples_stored": stored_total, "stored_where": "timescaledb" if stored_in_db
            else "memory sink", "lost": declared - stored_total, "bad_sessions": bad}


def _verdict(r: dict[str, Any]) -> dict[str, Any]:
    reasons = []
    if r["lost"] != 0 or r["bad_sessions"]:
        reasons.append("loss or unfinished sessions")
    frac = r.get("durable_over_offered")
    if frac is None or frac < STORED_FRACTION_MIN:
        reasons.append(f"durable {frac} of offered")
    b = r["rig_backlog_chunks"]
    growth = b["trend_per_s"] * r["window_s"]
    if growth > BACKLOG_GROWTH_MAX_CHUNKS_PER_RIG * r["rigs"]:
        reasons.append(f"rig backlog grows {b['trend_per_s']} chunks/s "
                       f"({b['start']} -> {b['end']})")
    if r["mode"] == "full":
        p99 = r["cue_ms"]["p99"]
        if p99 is None or p99 >= CUE_P99_TARGET_MS:
            reasons.append(f"cue p99 {p99} ms")
    return {"pass": not reasons, "fail_reasons": reasons}


# ════════════════════════════════════════════════════════════════ summary


def _label(r: dict[str, Any]) -> str:
    """The mode, and `+rtN` when the controller ran SCHED_RR (--controller-rt)."""
    return (str(r["mode"]) + (f"+rt{r['controller_rt']}" if r.get("controller_rt") else "")
            + (f"/r{r['rig_rt']}" if r.get("rig_rt") else ""))


def summary_table(results: list[dict[str, Any]]) -> str:
    base = {r["rigs"]: r for r in results if r["mode"] == "transport"}
    head = (f"{'rigs':>4} {'mode':13} {'offered/s':>9} {'durable':>7} {'cue p50/p99':>12} "
            f"{'smpl→cue p99':>12} {'ack p50/p99':>12} {'lost':>5} {'rigs cpu':>8} "
            f"{'ctrl cpu':>8} {'(loop/kern/wr/zmq)':>20} {'pg cpu':>6} {'total':>6} "
            f"{'×transp':>7} {'others':>6} {'steal':>5} {'loop wait':>9} {'probe':>6} {'pass':>4}")
    lines = [head, "-" * len(head)]
    for r in results:
        c = r["cpu_cores"]
        b = base.get(r["rigs"])
        ratio = (f"{c['total_ours'] / b['cpu_cores']['total_ours']:.2f}"
                 if b and b["cpu_cores"]["total_ours"] else "-")
        split = "/".join(f"{c.get(k, 0.0):.2f}" for k in ("ctrl_loop", "kernels", "writer",
                                                           "zmq_io"))

        def pp(h: dict[str, Any]) -> str:
            return "-" if not h["n"] else f"{h['p50']:.1f}/{h['p99']:.1f}"

        frac = r.get("durable_over_offered")
        lines.append(
            f"{r['rigs']:>4} {_label(r):13} {r['offered_samples_per_s']:>9} "
            f"{'-' if frac is None else f'{frac:.3f}':>7} {pp(r['cue_ms']):>12} "
            f"{'-' if not r['cue_sample_ms']['n'] else r['cue_sample_ms']['p99']:>12} "
            f"{pp(r['ack_lag_ms']):>12} {r['lost']:>5} {c['rigs']:>8.2f} "
            f"{c['ctrl_process']:>8.2f} {split:>20} {c['postgres']:>6.2f} "
            f"{c['total_ours']:>6.2f} {ratio:>7} {c['others']:>6.2f} {c.get('steal', 0.0):>5.2f} "
            f"{c.get('ctrl_loop_run_delay', 0.0):>9.3f} {r.get('speed_probe_ms', 0.0):>6.1f} "
            f"{'yes' if r['pass'] else 'NO':>4}")
    return "\n".join(lines)


class GcPauses:
    """Garbage-collector pauses in this (the controller's) process, per generation: every
    collection stops all its threads, the loop included."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._t0)

    def take(self) -> dict[str, Any]:
        out = {}
        for g, p in self.pauses.items():
            out[f"gen{g}"] = {"n": len(p), "total_ms": round(1000 * sum(p), 1),
                              "max_ms": round(1000 * max(p), 2) if p else None}
            p.clear()
        return out


GC_PAUSES = GcPauses()


def speed_probe(repeats: int = 5) -> float:
    """CPU ms (thread time, median of ``repeats``) of a fixed mix of interpreter and small-numpy
    work like the controller's per-chunk code. Taken before every run: this VM's speed drifts
    (the same code has needed ~30 % more CPU for the same load in some hours), so a run's
    figures are read next to its probe; lower is faster."""
    times = []
    arr = np.arange(42, dtype=np.float32)
    for _ in range(repeats):
        t0 = time.thread_time()
        d: dict[int, float] = {}
        acc = 0.0
        for i in range(20_000):
            d[i & 255] = d.get(i & 255, 0.0) + i
            if i % 8 == 0:
                j = i % 35
                acc += float(arr[j:j + 7].reshape(7, 1).sum())
        times.append(time.thread_time() - t0)
    return round(1000 * statistics.median(times), 2)


def machine_info() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"bench": "capacity", "part": "machine", "cpus": os.cpu_count(), "cpu_model": model,
            "mem_gb": round(mem_kb / 1024**2, 1), "loadavg": list(os.getloadavg()),
            "python": sys.version.split()[0], "zmq": zmq.zmq_version(),
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--steps", default=DEFAULT_STEPS, help="rig counts to ramp through")
    ap.add_argument("--modes", default="transport,db,full",
                    help="comma list of transport, db, full (run in this order per step)")
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds after the launch")
    ap.add_argument("--rate", type=float, default=120.0, help="sample rate of every rig, Hz")
    ap.add_argument("--trackers", type=int, choices=(3, 6), default=6,
                    help="6: LOAD_TEST_TRACKERS, 3: DEFAULT_TRACKERS (tool, headset, off_hand)")
    ap.add_argument("--rig-procs", type=int, default=2, help="rig worker processes")
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="agent chunk interval")
    ap.add_argument("--report-s", type=float, default=1.0, help="worker report interval")
    ap.add_argument("--no-stop", action="store_true", help="keep ramping after a failed step")
    ap.add_argument("--controller-nice", type=int, default=None,
                    help="nice value of this process (controller; postgres inherits it), the "
                    "rig workers reset theirs to 0: is the cue tail OS scheduling?")
    ap.add_argument("--rig-nice", type=int, default=None,
                    help="run the simulated rig workers at this nice increment (e.g. 10: the "
                         "load generator yields to the controller side, as rigs on their own "
                         "hardware would not compete with it)")
    ap.add_argument("--rig-rt", default="0", metavar="P[,P...]",
                    help="SCHED_RR priority of the rig workers (0: normal), one per "
                         "--controller-rt value (or one for all): rigs stand in for their own "
                         "hardware, which this machine's database would never delay")
    ap.add_argument("--inflight-chunks", type=int, default=None, metavar="N",
                    help="the credit window the controller grants (ControllerConfig."
                         "max_inflight_chunks)")
    ap.add_argument("--rig-send-every", type=int, default=None, metavar="N",
                    help="rig workers send the chunks of every N agents back to back "
                         "(AgentGroup send_every; default devices.agent.SWEEP_SEND_EVERY)")
    ap.add_argument("--gc-threshold", default=None, metavar="G0,G1,G2",
                    help="gc.set_threshold() of the controller process, for A/B runs of "
                         "collector pauses (default: ControllerConfig.gc_thresholds)")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval() of the controller process, s (default: "
                         "ControllerConfig.gil_switch_interval_s)")
    ap.add_argument("--controller-rt", default="0", metavar="P[,P...]",
                    help="SCHED_RR priority of the controller loop and its ZeroMQ I/O threads "
                         "(ControllerConfig.realtime_priority); 0: normal scheduling. A list "
                         "runs each mode once per value, alternating (A/B in the same minutes)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 10 rigs, short runs")
    ap.add_argument("--dsn", help="use this throw-away database (its telemetry is truncated)")
    ap.add_argument("--profile", metavar="DIR",
                    help="py-spy the controller and one rig worker during each window")
    ap.add_argument("--observer-thread", action="store_true",
                    help="run scoring on the controller's observer thread instead of its loop")
    ap.add_argument("--profile-idle", action="store_true",
                    help="with --profile: sample idle/waiting threads too (latency), not only "
                         "the controller threads holding the GIL")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        with contextlib.suppress(OSError):  # not the controller's nice: 0 or --rig-nice
            want = args.rig_nice or 0
            if os.getpriority(os.PRIO_PROCESS, 0) != want:
                os.setpriority(os.PRIO_PROCESS, 0, want)
        prio = int(args.rig_rt)
        if prio:  # the main thread now, ZeroMQ's I/O thread when the context starts
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(prio))
            ctx: zmq.Context[Any] = zmq.Context.instance()
            ctx.set(zmq.THREAD_SCHED_POLICY, os.SCHED_RR)
            ctx.set(zmq.THREAD_PRIORITY, prio)
        run_worker(spec_from_json(args.spec), args.first, args.stop, args.report_s,
                   args.rig_send_every)
        return 0
    if args.quick:
        args.steps, args.duration, args.warmup = "10", 5.0, 2.0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"transport", "db", "full"}:
        ap.error(f"unknown mode in {modes}")
    trackers = LOAD_TEST_TRACKERS if args.trackers == 6 else DEFAULT_TRACKERS
    realtime = [int(x) for x in args.controller_rt.split(",") if x.strip()] or [0]
    rig_rt = [int(x) for x in args.rig_rt.split(",") if x.strip()] or [0]
    if len(rig_rt) == 1:
        rig_rt *= len(realtime)
    if len(rig_rt) != len(realtime):
        ap.error("--rig-rt needs one value, or one per --controller-rt value")
    global PROFILE_IDLE, OBSERVER_THREAD
    PROFILE_IDLE = args.profile_idle
    OBSERVER_THREAD = args.observer_thread
    global RIG_NICE, RIG_SEND_EVERY
    RIG_NICE = args.rig_nice
    RIG_SEND_EVERY = args.rig_send_every
    global INFLIGHT_CHUNKS
    INFLIGHT_CHUNKS = args.inflight_chunks
    if args.switch_interval is not None:
        global GIL_SWITCH_S
        GIL_SWITCH_S = args.switch_interval
        sys.setswitchinterval(args.switch_interval)
    if args.controller_nice is not None:  # before any thread exists: threads inherit it
        os.setpriority(os.PRIO_PROCESS, 0, args.controller_nice)
    gc.callbacks.append(GC_PAUSES)
    if args.gc_threshold:
        global GC_THRESHOLDS
        g0, g1, g2 = (int(x) for x in args.gc_threshold.split(","))
        GC_THRESHOLDS = (g0, g1, g2)
    emit({**machine_info(), "switch_interval_s": GIL_SWITCH_S or "controller default", "modes": modes,
          "nice": os.getpriority(os.PRIO_PROCESS, 0), "rig_nice": args.rig_nice or 0,
          "rig_send_every": args.rig_send_every, "inflight_chunks": args.inflight_chunks,
          "gc_threshold": GC_THRESHOLDS or "controller default",
          "steps": args.steps, "duration_s": args.duration, "warmup_s": args.warmup})
    bench = Bench(args)
    results: list[dict[str, Any]] = []
    best: int | None = None
    try:
        for n in (int(x) for x in args.steps.split(",")):
            step_failed = False
            for mode, rt, rrt in [(m, p, q) for m in modes for p, q in zip(realtime, rig_rt, strict=True)]:
                rs = RunSpec(mode, n, args.rate, trackers, args.warmup, args.duration,
                             args.rig_procs, args.chunk_ms / 1000.0, realtime=rt or None,
                             rig_rt=rrt)
                try:
                    r = run_once(bench, rs)
                except Exception as exc:  # a step that cannot run is a failed step, reported
                    r = {"bench": "capacity", "mode": mode, "rigs": n, "pass": False,
                         "error": f"{type(exc).__name__}: {exc}"}
                    emit(r)
                    step_failed = True
                    break
                emit(r)
                results.append(r)
                if mode == modes[-1] and rt == realtime[-1]:
                    if r["pass"]:
                        best = n
                    else:
                        step_failed = True
            if step_failed and not args.no_stop:
                break
    finally:
        bench.close()
    emit({"bench": "capacity", "part": "result", "criterion_mode": modes[-1],
          "highest_passing_rigs": best, "rate_hz": args.rate, "trackers": args.trackers,
          "cue_p99_target_ms": CUE_P99_TARGET_MS, "loadavg_end": list(os.getloadavg())})
    ok = [r for r in results if "cpu_cores" in r]
    if ok:
        print(summary_table(ok), file=sys.stderr)
        print(f"highest rig count passing in mode {modes[-1]!r}: {best}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
