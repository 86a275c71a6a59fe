"""Simulated rigs per core at 120 Hz: the driver alone, and full agents (one process with many
agents vs a process per rig), side by side in one run. Prints JSON lines.

    .venv/bin/python benchmarks/bench_fleet.py [--rigs 40] [--seconds 8] [--trackers 6]

Driver alone: N `SimulatedRig`s read every 20 ms (the agent's chunk interval) on a virtual
clock; CPU time per simulated second gives rigs per core. Full agents: a controller (in this
process, spool sink) plus the fleet's worker processes streaming a class-launched exercise;
the workers' CPU (utime + stime from /proc) over a steady window, per rig.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from devices.driver import SessionContext
from devices.fleet import Fleet, FleetSpec
from devices.sim.rig import SimulatedRig
from devices.sim.trainee import DEFAULT_TRACKERS, LOAD_TEST_TRACKERS
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


def _cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def full_agents(n: int, processes: int, trackers: tuple[str, ...], seconds: float
                ) -> dict[str, Any]:
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
            with Fleet(spec) as fleet:
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
    return {"bench": "full_agents", "rigs": n, "processes": processes,
            "trackers": len(trackers), "worker_cpu_cores": round(cpu_frac, 3),
            "cpu_per_rig_pct": round(100 * cpu_frac / n, 3),
            "rigs_per_core_120hz": round(n / cpu_frac, 1) if cpu_frac > 0 else None,
            "running_sessions": sum(1 for r in rows if r["state"] == "running"),
            "samples": sum(int(r["samples"]) for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rigs", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--trackers", type=int, choices=(3, 6), default=6)
    ap.add_argument("--skip-agents", action="store_true")
    args = ap.parse_args()
    trackers = LOAD_TEST_TRACKERS if args.trackers == 6 else DEFAULT_TRACKERS
    print(json.dumps(driver_only(args.rigs, trackers, 20.0)), flush=True)
    if args.skip_agents:
        return
    for processes in (1, args.rigs):
        print(json.dumps(full_agents(args.rigs, processes, trackers, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
