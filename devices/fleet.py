"""Fleet launcher: N simulated rigs, each a full protocol peer (agent + `SimulatedRig`).

Rigs run as ``processes`` worker processes, each serving its share of the rigs with one
`AgentGroup` (one thread, one poller). ``processes=1`` is "one process with many agents",
``processes=count`` is "a process per rig"; ``benchmarks/bench_fleet.py`` measures both
(results in ``docs/devices.md``): many agents per process cost far less CPU per rig than a
process each (no per-process interpreter, context and I/O thread), so the default is one
worker per core.

Skills are assigned from a mix (``expert:0.2,intermediate:0.5,novice:0.3``) by largest
remainder and then shuffled with the fleet seed, so the same command gives every rig the same
skill and seed on every run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from devices.sim.rig import SimulatedRig, warmup
from devices.sim.skill import assign_skills, parse_skill_mix
from devices.sim.trainee import DEFAULT_TRACKERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetSpec:
    """What to launch (every field has a CLI flag in ``labctl rig sim``)."""

    controller: str
    count: int
    skill_mix: str = "expert:0.2,intermediate:0.5,novice:0.3"
    trackers: tuple[str, ...] = DEFAULT_TRACKERS
    rate_hz: float = 120.0
    seed: int = 0
    rig_prefix: str = "sim"
    processes: int = 1
    chunk_s: float = 0.02
    data_endpoint: str | None = None
    site_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Scenes the rigs will be started with: each worker compiles the simulation kernels for
    # them before its rigs register (`devices.sim.rig.warmup`), not in the first session.
    warmup_scenes: list[dict[str, Any]] = field(default_factory=list)

    def rig_ids(self) -> list[str]:
        return [f"{self.rig_prefix}-{i:03d}" for i in range(self.count)]

    def skills(self) -> list[str]:
        """Skill preset per rig index (deterministic for a given seed)."""
        names = assign_skills(self.count, parse_skill_mix(self.skill_mix))
        order = np.random.default_rng([self.seed, 0xF1EE7]).permutation(self.count)
        return [names[int(i)] for i in order]

    def shares(self) -> list[range]:
        """Rig index ranges of the worker processes (as even as possible)."""
        p = max(1, min(self.processes, self.count))
        bounds = np.linspace(0, self.count, p + 1).round().astype(int)
        return [range(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def build_agents(spec: FleetSpec, indices: Sequence[int]) -> list[Any]:
    """Agents (with their simulated drivers) for the given rig indices, sharing one context."""
    import zmq

    from devices.agent import AgentConfig, RigAgent

    ctx: zmq.Context[Any] = zmq.Context.instance()
    ids, skills = spec.rig_ids(), spec.skills()
    agents = []
    for i in indices:
        driver = SimulatedRig(skills[i], trackers=spec.trackers, rate_hz=spec.rate_hz,
                              seed=spec.seed * 100_003 + i)
        cfg = AgentConfig(controller=spec.controller, rig_id=ids[i], site_id=spec.site_id,
                          data_endpoint=spec.data_endpoint, chunk_s=spec.chunk_s,
                          software_version=f"sim/{skills[i]}")
        agents.append(RigAgent(cfg, driver, ctx))
    return agents


def run_worker(spec: FleetSpec, indices: Sequence[int], stats_every: float = 0.0,
               stop: threading.Event | None = None, orphan_check: bool = False) -> None:
    """Serve the given rigs in this process until SIGTERM/SIGINT (or ``stop`` is set)."""
    from devices.agent import AgentGroup

    if spec.warmup_scenes:
        took = warmup(spec.warmup_scenes, spec.trackers)
        log.info("simulation kernels ready in %.1f s", took)
    agents = build_agents(spec, indices)
    group = AgentGroup(agents, freeze_gc=True)
    if stop is not None:
        def watch() -> None:
            stop.wait()
            group.stop()

        threading.Thread(target=watch, daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: group.stop())
        signal.signal(signal.SIGINT, lambda *_: group.stop())
    if orphan_check:
        parent = os.getppid()

        def watch_parent() -> None:
            # a launcher killed with -9 cannot stop us: leave when we are orphaned
            while not group._stop.wait(1.0):
                if os.getppid() != parent:
                    log.warning("fleet launcher gone; stopping %d rigs", len(agents))
                    group.stop()

        threading.Thread(target=watch_parent, daemon=True).start()
    if stats_every > 0:
        def report() -> None:
            while not group._stop.wait(stats_every):
                total: dict[str, Any] = {"pid": os.getpid(), "rigs": len(agents),
                                         "registered": sum(a.registered for a in agents),
                                         "cpu_s": time.process_time()}
                for a in agents:
                    for k, v in a.stats.items():
                        total[k] = total.get(k, 0) + v
                print(json.dumps(total), flush=True)

        threading.Thread(target=report, daemon=True).start()
    group.run()


class Fleet:
    """Worker processes of one fleet (see module docstring); a context manager."""

    def __init__(self, spec: FleetSpec, stats_every: float = 0.0,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.spec = spec
        self.stats_every = stats_every
        self.env = env
        self.cwd = cwd  # working directory of the workers (a benchmark runs another checkout)
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> Fleet:
        payload = json.dumps({**asdict(self.spec), "trackers": list(self.spec.trackers)})
        for share in self.spec.shares():
            cmd = [sys.executable, "-m", "devices.fleet", "--spec", payload,
                   "--first", str(share.start), "--stop", str(share.stop),
                   "--stats-every", str(self.stats_every)]
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                               env=self.env, cwd=self.cwd))
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.procs)

    def stop(self, timeout: float = 10.0) -> list[int | None]:
        """SIGTERM every worker (each closes its agents cleanly), then wait."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return [p.returncode for p in self.procs]

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spec_from_json(text: str) -> FleetSpec:
    raw = json.loads(text)
    raw["trackers"] = tuple(raw["trackers"])
    return FleetSpec(**raw)


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: ``python -m devices.fleet --spec JSON --first A --stop B``."""
    ap = argparse.ArgumentParser(prog="python -m devices.fleet")
    ap.add_argument("--spec", required=True, help="FleetSpec as JSON")
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--stop", type=int, required=True)
    ap.add_argument("--stats-every", type=float, default=0.0)
    ap.add_argument("-v", "--verbose", action="count", default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(spec_from_json(args.spec), range(args.first, args.stop), args.stats_every,
               orphan_check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
