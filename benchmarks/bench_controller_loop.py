"""The controller loop's CPU per chunk, in process, without sockets: a real `Controller` whose
rigs registered through its own HELLO handler, fed pre-encoded chunks of simulated trainees
in poll rounds of ``--round`` chunks. Prints JSON lines.

    .venv/bin/python benchmarks/bench_controller_loop.py [--rigs 200] [--seconds 6]
        [--round 64] [--modes transport,scoring] [--base DIR --rounds 3]

Modes: ``transport`` — a `MemorySink`, no observer (the data path alone: header, route,
sequence bookkeeping, numpy views, sink hand-over); ``scoring`` — the same plus the
`ScoringObserver` of a `LabPipeline` exactly as `labctl demo` wires it (its writer thread is
never started: the windows and cues it would store stay in the writer's queue). Per chunk:
thread CPU time of `Controller._on_data_batch` + the per-round `_after_io`, after one warm-up
round (numba kernels loaded). Each run also prints a digest of what reached the sink and
the writer's queue, so old and new code can be shown to do exactly the same.

Why in process: on this shared 2-core machine a socket run's per-chunk CPU moves ±30 % with
the neighbours' load; thread CPU of one thread doing a fixed amount of work moves far less,
and ``--base`` alternates old and new code (ABBA, ``--rounds`` times) so both see the same
machine. The replies the controller sends (acks, cues) go to a stand-in socket object that
only counts them: no peer exists in this benchmark (the socket paths are in bench_capacity).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def emit(rec: dict[str, Any]) -> None:
    print(json.dumps(rec, sort_keys=True), flush=True)


class _CountingSockets:
    """Stands in for `ControllerSockets` on the send side: counts what would be sent."""

    def __init__(self) -> None:
        self.sent = 0

    def send_control(self, identity: bytes, frames: tuple[bytes, bytes]) -> bool:
        self.sent += 1
        return True

    def send_data_reply(self, identity: bytes, frames: tuple[bytes, bytes]) -> bool:
        self.sent += 1
        return True

    def send_api(self, envelope: Any, frames: tuple[bytes, bytes]) -> bool:
        return True


def measure(mode: str, n_rigs: int, seconds: float, per_round: int) -> dict[str, Any]:
    """One run with the code importable from this process (its sys.path decides which)."""
    from devices.driver import SessionContext
    from devices.sim.rig import SimulatedRig
    from devices.sim.trainee import LOAD_TEST_TRACKERS
    from lab_controller import protocol as P
    from lab_controller.controller import Controller, ControllerConfig, MemorySink
    from lab_controller.controller.transport import Incoming
    from lab_controller.exercises import scene_for

    logging.disable(logging.WARNING)
    observers: list[Any] = []
    pipe: Any = None
    spool = tempfile.mkdtemp(prefix="bench-loop-")
    if mode == "scoring":
        from lab_controller.pipeline import LabPipeline
        from telemetry.writer import WriterConfig
        # never started: nothing connects to this DSN
        pipe = LabPipeline("postgresql://bench@127.0.0.1:1/none",
                           WriterConfig(site_id="bench", spool_dir=Path(spool)))
        observers = [pipe.observer]
    sink = MemorySink()
    ctrl = Controller(ControllerConfig(heartbeat_interval_s=60.0), sink, observers=observers)
    ctrl._sockets = _CountingSockets()  # type: ignore[assignment]
    scene = scene_for("fillet_t_joint_h")
    clock = [0.0]
    per_chunk = round(0.02 * 120)  # 20 ms chunks at 120 Hz, as the agents send
    streams: list[list[tuple[bytes, bytes]]] = []
    for i in range(n_rigs):
        clock[0] = 0.0
        rig = SimulatedRig(("expert", "intermediate", "novice")[i % 3],
                           trackers=LOAD_TEST_TRACKERS, seed=i, clock=lambda: clock[0])
        sid = uuid.UUID(int=i + 1)
        rig.start(SessionContext(str(sid), "fillet_t_joint_h", "bench"), scene, {})
        info = rig.describe()
        specs = [P.TrackerSpec(name=n, role=P.TrackerRole(r)) for n, r in info.trackers]
        layout = P.make_layout(list(info.trackers), info.analog)
        hello = P.Hello(rig_id=f"rig-{i:03d}", trackers=specs, rate_hz=120.0,
                        analog=list(info.analog), layout_id=layout.layout_id, rig_time=0.0,
                        active_session=P.ActiveSession(
                            session_id=str(sid), exercise_id="fillet_t_joint_h",
                            state=P.RigState.RUNNING, next_seq=0))
        ctrl._on_hello(f"id{i}".encode(), hello, None)
        rec = ctrl.registry.get(f"rig-{i:03d}")
        assert rec is not None
        blocks: list[Any] = []
        for step in range(1, int(seconds / 0.02) + 2):
            clock[0] = step * 0.02
            blocks.extend(rig.read(rig.clock()))
        poses = np.concatenate([b.poses for b in blocks])
        analog = np.concatenate([b.analog for b in blocks])
        valid = np.concatenate([b.valid for b in blocks])
        frames = []
        for k in range(0, poses.shape[0] - per_chunk + 1, per_chunk):
            v = valid[k:k + per_chunk]
            frames.append(P.encode_chunk(
                rig_handle=rec.handle, layout=layout, session_id=sid, first_seq=k,
                rig_time_first=k / 120.0, period=1 / 120.0,
                poses=np.ascontiguousarray(poses[k:k + per_chunk]),
                analog=np.ascontiguousarray(analog[k:k + per_chunk]),
                valid=None if v.all() else v))
        streams.append(frames)
    n_chunks = min(len(f) for f in streams)
    order = [Incoming("data", [], list(streams[r][j]))
             for j in range(n_chunks) for r in range(n_rigs)]
    ctrl._on_data_batch(order[:n_rigs])  # warm-up: kernels loaded, routes known
    order = order[n_rigs:]
    gc.collect()
    gc.freeze()
    t0 = time.thread_time()
    for s in range(0, len(order), per_round):
        ctrl._on_data_batch(order[s:s + per_round])
        ctrl.runner.flush()
        ctrl._after_io()
    cpu = time.thread_time() - t0
    digest = hashlib.sha256()
    for ch in sink.chunks:
        digest.update(ch.header.session + str((ch.first_seq, ch.count)).encode())
        digest.update(ch.poses.tobytes())
    if pipe is not None:
        for record, _rows in pipe.writer._queue:
            digest.update(repr(record).encode())
    return {"bench": "controller_loop", "mode": mode, "rigs": n_rigs, "round": per_round,
            "chunks": len(order), "us_per_chunk": round(1e6 * cpu / len(order), 2),
            "bad_input": ctrl.bad.total, "digest": digest.hexdigest()[:16],
            "windows_and_cues_queued": 0 if pipe is None else len(pipe.writer._queue)}


def measure_in(code_dir: str | None, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """`measure` in a child process importing the project from ``code_dir`` (this tree: None)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", mode, "--rigs", str(args.rigs),
           "--seconds", str(args.seconds), "--round", str(args.round)]
    env = {**os.environ, "PYTHONPATH": code_dir or str(ROOT)}
    out = subprocess.run(cmd, env=env, cwd=code_dir or str(ROOT), check=True,
                         capture_output=True, text=True).stdout
    row: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rigs", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=6.0, help="simulated seconds per rig")
    ap.add_argument("--round", type=int, default=64, help="chunks per poll round")
    ap.add_argument("--modes", default="transport,scoring")
    ap.add_argument("--base", help="a checkout of older code to compare with (ABBA order)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        sys.path.insert(0, os.getcwd())
        emit(measure(args.one, args.rigs, args.seconds, args.round))
        return
    emit({"bench": "controller_loop", "part": "machine", "cpus": os.cpu_count(),
          "loadavg": os.getloadavg(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "base": args.base})
    for mode in args.modes.split(","):
        runs: dict[str, list[dict[str, Any]]] = {"this": [], "base": []}
        for r in range(args.rounds if args.base else 1):
            order = ["this", "base"] if r % 2 == 0 else ["base", "this"]
            for which in order:
                if which == "base" and not args.base:
                    continue
                row = measure_in(args.base if which == "base" else None, mode, args)
                row["code"] = which
                runs[which].append(row)
                emit(row)
        summary: dict[str, Any] = {"bench": "controller_loop", "part": "summary", "mode": mode,
                                   "rigs": args.rigs, "round": args.round,
                                   "loadavg_1m": os.getloadavg()[0]}
        for which, rows in runs.items():
            if rows:
                summary[f"{which}_us_per_chunk_median"] = statistics.median(
                    x["us_per_chunk"] for x in rows)
                summary[f"{which}_digests"] = sorted({x["digest"] for x in rows})
        if runs["base"]:
            summary["ratio_this_over_base"] = round(
                summary["this_us_per_chunk_median"] / summary["base_us_per_chunk_median"], 3)
            summary["same_output"] = summary["this_digests"] == summary["base_digests"]
        emit(summary)


if __name__ == "__main__":
    main()
