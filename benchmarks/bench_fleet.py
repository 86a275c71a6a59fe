"""Simulated rigs per core at 120 Hz: the driver alone, and full agents (one process with many
agents vs a process per rig), side by side in one run. Prints JSON lines.

    .venv/bin/python benchmarks/bench_fleet.py [--rigs 40] [--seconds 8] [--trackers 6]
        [--processes 1,40] [--base /tmp/fleet-base --rounds 3] [--skip-trainee]
        [--skip-driver] [--skip-agents] [--side-by-side N --base DIR --rounds 2]

Trainee alone: `TraineeMotion.generate` in 2 s blocks (the rig's look-ahead) for the 3 exercises
x 3 skills, CPU ms per rig per simulated second, after a first call that loads (or compiles)
the numba kernels (its time is reported as ``first_call_s``).

Driver alone: N `SimulatedRig`s read every 20 ms (the agent's chunk interval) on a virtual
clock; CPU time per simulated second gives rigs per core. Full agents: a controller (in this
process, spool sink) plus the fleet's worker processes streaming a class-launched exercise;
the workers' CPU (utime + stime from /proc) over a steady window, per rig.

``--base DIR`` (a checkout of older code, e.g. ``git worktree add /tmp/fleet-base <commit>``)
runs every measurement for this tree and for DIR alternately (ABBA order, ``--rounds`` times,
same controller code in this process) and prints the medians and their ratio: on a shared,
noisy machine only figures taken side by side are comparable.

``--side-by-side N`` (with ``--base``): one worker of N rigs of this tree and one of N rigs of
DIR stream at the same time to one controller (this process, memory sink), the same skills and
seeds on both sides, so both see the same machine load; the rig ranges swap every round. Worker
CPU (all threads, ZeroMQ's I/O thread included) per nominal 20 ms chunk (2.4 samples at 120 Hz)
and per chunk sent. A worker that falls behind reads larger blocks and pays less per sample:
``samples_per_read`` near 2.4 on both sides is the fair case.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from devices.driver import SessionContext
from devices.fleet import Fleet, FleetSpec
from devices.sim.rig import SimulatedRig
from devices.sim.skill import skill_by_name
from devices.sim.trainee import DEFAULT_TRACKERS, LOAD_TEST_TRACKERS, TraineeMotion
from lab_controller import protocol as P
from lab_controller.controller import ApiClient, Controller, ControllerConfig, SpoolSink
from lab_controller.exercises import scene_for

TICK = os.sysconf("SC_CLK_TCK")


def driver_only(n: int, trackers: tuple[str, ...], sim_seconds: float) -> dict[str, Any]:
    clock = [0.0]
    scene = scene_for("fillet_t_joint_h")
    rigs = []
    for i in range(n):
        r = SimulatedRig(("expert", "intermediate", "novice")[i % 3], trackers=trackers,
                         seed=i, clock=lambda: clock[0])
        r.start(SessionContext(f"{i:032x}", "fillet_t_joint_h", "t"), scene, {})
        rigs.append(r)
    # load (or compile) the trainee's numba kernels outside the timed loop: once per process
    TraineeMotion(scene, skill_by_name("novice"), trackers=trackers).generate(
        np.arange(1, 3, dtype=np.float64) / 120.0)
    samples = 0
    steps = int(sim_seconds / 0.02)
    t0 = time.process_time()
    for k in range(1, steps + 1):
        clock[0] = k * 0.02
        for r in rigs:
            for b in r.read(r.clock()):
                samples += b.count
    cpu = time.process_time() - t0
    return {"bench": "driver_only", "rigs": n, "trackers": len(trackers),
            "sim_seconds": sim_seconds, "cpu_s": round(cpu, 3), "samples": samples,
            "rigs_per_core_120hz": round(n * sim_seconds / cpu, 1)}


def trainee_only(trackers: tuple[str, ...], sim_seconds: float, block_s: float = 2.0
                 ) -> dict[str, Any]:
    """CPU of `TraineeMotion.generate` alone per rig and simulated second (9 trainees)."""
    cases = [(ex, sk) for ex in ("fillet_t_joint_h", "butt_weave_flat", "spray_panel_flat")
             for sk in ("expert", "intermediate", "novice")]
    sims = [TraineeMotion(scene_for(ex), skill_by_name(sk), trackers=trackers, seed=i)
            for i, (ex, sk) in enumerate(cases)]
    t0 = time.perf_counter()
    for sim in sims:
        sim.generate(np.arange(1, 3, dtype=np.float64) / 120.0)  # kernels loaded/compiled
    first = time.perf_counter() - t0
    n = int(block_s * 120.0)
    blocks = max(1, int(sim_seconds / block_s))
    c0 = time.process_time()
    for b in range(blocks):
        t = (b * n + np.arange(n, dtype=np.float64) + 3.0) / 120.0
        for sim in sims:
            sim.generate(t)
    cpu = time.process_time() - c0
    per = cpu / (len(sims) * blocks * block_s)
    return {"bench": "trainee_only", "trainees": len(sims), "trackers": len(trackers),
            "block_s": block_s, "sim_seconds": blocks * block_s, "cpu_s": round(cpu, 3),
            "ms_per_rig_per_sim_s": round(1e3 * per, 4), "first_call_s": round(first, 3)}


def trainee_only_in(code_dir: str | None, trackers: int, sim_seconds: float) -> dict[str, Any]:
    """`trainee_only` run in a child process importing the code of ``code_dir``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--trainee-only", "--trackers",
           str(trackers), "--sim-seconds", str(sim_seconds)]
    out = subprocess.run(cmd, env=_code_env(code_dir), cwd=code_dir, check=True,
                         capture_output=True, text=True).stdout
    row: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return row


def _cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def _code_env(code_dir: str | None) -> dict[str, str] | None:
    """Environment that makes child processes import ``devices`` etc. from ``code_dir``."""
    if code_dir is None:
        return None
    return {**os.environ, "PYTHONPATH": code_dir}


def driver_only_in(code_dir: str | None, n: int, trackers: int, sim_seconds: float
                   ) -> dict[str, Any]:
    """`driver_only` run in a child process importing the code of ``code_dir``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--driver-only", "--rigs", str(n),
           "--trackers", str(trackers), "--sim-seconds", str(sim_seconds)]
    out = subprocess.run(cmd, env=_code_env(code_dir), cwd=code_dir, check=True,
                         capture_output=True, text=True).stdout
    row: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return row


def full_agents(n: int, processes: int, trackers: tuple[str, ...], seconds: float,
                code_dir: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                               data_endpoint="tcp://127.0.0.1:*",
                               api_endpoint="tcp://127.0.0.1:*")
        ctrl = Controller(cfg, SpoolSink(Path(tmp) / "spool"))
        ctrl.start()
        api = ApiClient(ctrl.endpoints["api"], timeout_s=30)
        spec = FleetSpec(controller=ctrl.endpoints["control"], count=n, processes=processes,
                         trackers=trackers, rig_prefix=f"b{processes}")
        try:
            with Fleet(spec, env=_code_env(code_dir), cwd=code_dir) as fleet:
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    rigs = api.request(P.ApiRigs()).data["rigs"]
                    if sum(1 for r in rigs if r["alive"]) == n:
                        break
                    time.sleep(0.3)
                reply = api.request(P.ApiClassLaunch(
                    exercise_id="fillet_t_joint_h", trainees=[f"t{i}" for i in range(n)],
                    duration_s=seconds + 30.0,
                    params={"scene": scene_for("fillet_t_joint_h")}))
                if not reply.ok:
                    raise RuntimeError(reply.error)
                time.sleep(2.0)  # warm-up: imports done, sessions streaming
                c0, w0 = _cpu(fleet.pids), time.monotonic()
                time.sleep(seconds)
                c1, w1 = _cpu(fleet.pids), time.monotonic()
                rows = api.request(P.ApiSessions()).data["sessions"]
        finally:
            api.close()
            ctrl.stop()
    cpu_frac = (c1 - c0) / (w1 - w0)
    return {"bench": "full_agents", "code": code_dir or "this tree", "rigs": n,
            "processes": processes,
            "trackers": len(trackers), "worker_cpu_cores": round(cpu_frac, 3),
            "cpu_per_rig_pct": round(100 * cpu_frac / n, 3),
            "rigs_per_core_120hz": round(n / cpu_frac, 1) if cpu_frac > 0 else None,
            "running_sessions": sum(1 for r in rows if r["state"] == "running"),
            "samples": sum(int(r["samples"]) for r in rows)}


def _worker_stats(proc: subprocess.Popen[str], into: dict[str, dict[str, Any]], key: str) -> None:
    """Keep the latest stats line a fleet worker prints (``--stats-every``)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            into[key] = json.loads(line)
        except ValueError:
            continue


def side_by_side(n: int, trackers: tuple[str, ...], seconds: float, base: str, swap: bool
                 ) -> dict[str, Any]:
    """N rigs of this tree and N rigs of ``base`` at once against one controller (see module
    docstring); returns both sides' worker CPU per nominal chunk and their ratio."""
    from lab_controller.controller import MemorySink
    from lab_controller.controller.launch import health_check

    sink = MemorySink()
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*")
    ctrl = Controller(cfg, sink)
    ctrl.start()
    api = ApiClient(ctrl.endpoints["api"], timeout_s=60)
    sides = [("new", None), ("base", base)]
    if swap:
        sides.reverse()  # the other side connects (and is launched) first
    latest: dict[str, dict[str, Any]] = {}
    fleets: dict[str, Fleet] = {}
    stop = threading.Event()

    def trim() -> None:  # MemorySink keeps every chunk
        while not stop.wait(0.5):
            sink.chunks.clear()

    threading.Thread(target=trim, daemon=True).start()
    try:
        for label, code in sides:
            spec = FleetSpec(controller=ctrl.endpoints["control"], count=n, processes=1,
                             trackers=trackers, rig_prefix=f"sbs-{label}")
            fleets[label] = Fleet(spec, stats_every=0.5, env=_code_env(code), cwd=code).start()
            threading.Thread(target=_worker_stats, args=(fleets[label].procs[0], latest, label),
                             daemon=True).start()
        ids = [r for f in fleets.values() for r in f.spec.rig_ids()]
        end = time.monotonic() + 60
        while time.monotonic() < end and not all(health_check(ctrl, r).ok for r in ids):
            time.sleep(0.3)
        reply = api.request(P.ApiClassLaunch(
            exercise_id="fillet_t_joint_h", rigs=ids, trainees=[f"t{i}" for i in range(len(ids))],
            duration_s=seconds + 30.0, params={"scene": scene_for("fillet_t_joint_h")}))
        if not reply.ok or reply.data.get("started") != len(ids):
            raise RuntimeError(f"class launch: {reply.error or reply.data.get('not_started')}")
        time.sleep(3.0)  # warm-up: every session streaming, first look-ahead blocks generated
        s0 = {k: dict(latest[k]) for k in fleets}
        c0 = {k: _cpu(f.pids) for k, f in fleets.items()}
        w0 = time.monotonic()
        time.sleep(seconds + 0.6)  # + one stats interval: the last line is fresh
        s1 = {k: dict(latest[k]) for k in fleets}
        c1 = {k: _cpu(f.pids) for k, f in fleets.items()}
        wall = time.monotonic() - w0
    finally:
        stop.set()
        for f in fleets.values():
            f.stop()
        api.close()
        ctrl.stop()
    out: dict[str, Any] = {"bench": "side_by_side", "rigs_per_side": n, "trackers": len(trackers),
                           "base": base, "swap": swap, "window_s": round(wall, 2),
                           "loadavg": os.getloadavg()}
    for k in fleets:
        cpu = c1[k] - c0[k]
        samples = s1[k]["samples_produced"] - s0[k]["samples_produced"]
        sent = s1[k]["chunks_sent"] - s0[k]["chunks_sent"]
        out[k] = {"worker_cores": round(cpu / wall, 3),
                  "us_per_chunk_20ms": round(1e6 * cpu / max(1.0, samples / 2.4), 1),
                  "us_per_chunk_sent": round(1e6 * cpu / max(1, sent), 1),
                  "samples_per_rig_s": round(samples / n / wall, 1),
                  "samples_per_chunk_sent": round(samples / max(1, sent), 2)}
    out["ratio_new_over_base"] = round(out["new"]["us_per_chunk_20ms"]
                                       / out["base"]["us_per_chunk_20ms"], 3)
    return out


def _compare(name: str, runs: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    new = statistics.median(r[key] for r in runs["new"])
    base = statistics.median(r[key] for r in runs["base"])
    return {"bench": f"{name}_compare", "metric": key, "median_new": new, "median_base": base,
            "ratio_new_over_base": round(new / base, 2) if base else None,
            "runs": len(runs["new"]), "loadavg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rigs", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sim-seconds", type=float, default=20.0, help="driver-only virtual time")
    ap.add_argument("--trackers", type=int, choices=(3, 6), default=6)
    ap.add_argument("--processes", default=None,
                    help="comma list of worker-process counts (default: 1,RIGS)")
    ap.add_argument("--base", default=None, help="checkout of older code to compare with")
    ap.add_argument("--rounds", type=int, default=1, help="with --base: A/B rounds (ABBA)")
    ap.add_argument("--skip-agents", action="store_true")
    ap.add_argument("--skip-driver", action="store_true")
    ap.add_argument("--skip-trainee", action="store_true")
    ap.add_argument("--side-by-side", type=int, default=0, metavar="N",
                    help="with --base: N rigs of each tree streaming at once (rounds swap sides)")
    ap.add_argument("--driver-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trainee-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    trackers = LOAD_TEST_TRACKERS if args.trackers == 6 else DEFAULT_TRACKERS
    if args.driver_only:
        print(json.dumps(driver_only(args.rigs, trackers, args.sim_seconds)), flush=True)
        return
    if args.trainee_only:
        print(json.dumps(trainee_only(trackers, args.sim_seconds)), flush=True)
        return
    base = None if args.base is None else os.path.abspath(args.base)
    if args.side_by_side:
        if base is None:
            ap.error("--side-by-side needs --base")
        rows = []
        for r in range(max(1, args.rounds)):
            row = side_by_side(args.side_by_side, trackers, args.seconds, base, swap=r % 2 == 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(json.dumps({"bench": "side_by_side_compare", "rounds": len(rows),
                          "median_ratio": statistics.median(r["ratio_new_over_base"] for r in rows),
                          "median_new_us": statistics.median(r["new"]["us_per_chunk_20ms"]
                                                             for r in rows),
                          "median_base_us": statistics.median(r["base"]["us_per_chunk_20ms"]
                                                              for r in rows),
                          "loadavg": os.getloadavg()}), flush=True)
        return
    codes: list[tuple[str, str | None]] = [("new", None)] + ([("base", base)] if base else [])
    order: list[tuple[str, str | None]] = []
    for r in range(max(1, args.rounds) if base else 1):
        order += codes if r % 2 == 0 else codes[::-1]  # ABBA: drift in load hits both alike
    runs: dict[str, list[dict[str, Any]]]
    if not args.skip_trainee:
        runs = {"new": [], "base": []}
        for label, code in order:
            row = trainee_only_in(code, args.trackers, args.sim_seconds)
            row["code"] = label
            runs[label].append(row)
            print(json.dumps(row), flush=True)
        if base:
            print(json.dumps(_compare("trainee_only", runs, "ms_per_rig_per_sim_s")), flush=True)
    if not args.skip_driver:
        runs = {"new": [], "base": []}
        for label, code in order:
            row = driver_only_in(code, args.rigs, args.trackers, args.sim_seconds)
            row["code"] = label
            runs[label].append(row)
            print(json.dumps(row), flush=True)
        if base:
            print(json.dumps(_compare("driver_only", runs, "rigs_per_core_120hz")), flush=True)
    if args.skip_agents:
        return
    procs = ([int(p) for p in args.processes.split(",")] if args.processes
             else [1, args.rigs])
    for processes in procs:
        runs = {"new": [], "base": []}
        for label, code in order:
            row = full_agents(args.rigs, processes, trackers, args.seconds, code)
            row["code"] = label
            runs[label].append(row)
            print(json.dumps(row), flush=True)
        if base:
            print(json.dumps(_compare(f"full_agents_p{processes}", runs, "rigs_per_core_120hz")),
                  flush=True)


if __name__ == "__main__":
    main()
