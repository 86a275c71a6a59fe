"""Scale-out scoring: scored samples/s with 1, 2 and 4 worker processes vs in-process scoring.

Same workload in one run: S sessions of N samples (the fillet exercise's expert path with
noise, 3 trackers, 120 Hz), fed in chunks of C samples round-robin over the sessions as a
controller would, each session finished for its final result. Modes:

* ``inprocess`` — one thread, one ``SessionScorer`` per session (what ``LabPipeline`` does);
* ``pool-k`` — ``ScoringPool`` with k local worker processes (spawned and warmed up before
  timing); time from the first ``feed`` to the last final result.

Per-chunk overhead of the hop, two ways: amortised = (pool-1 time − in-process time) / chunks
with the pool's adaptive batching (callers run ahead, as under load); and the round-trip
latency of one chunk fed alone and waited for (``hop_latency``, p50/p99) next to the
in-process feed time of the same chunk.
Also the controller process's own CPU per chunk in each mode (the in-process scorer vs the
pool's callers + broker thread): the part that does not move to other machines.
Prints one JSON line per repeat and mode, then a summary line with medians and ratios.
Usage: ``python benchmarks/bench_scoring_workers.py [--sessions 8] [--samples 1200]
[--chunk 4] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

import numpy as np

from lab_controller.exercises import load_exercise
from lab_controller.scoring import SessionScorer
from lab_controller.scoring_workers import ScoringPool

EXERCISE = "fillet_t_joint_h"
RATE = 120.0


def workload(sessions: int, samples: int) -> list[tuple[Any, Any]]:
    ex = load_exercise(EXERCISE)
    ref = ex.reference.tool_pose[:samples].astype(np.float64)
    out = []
    for s in range(sessions):
        rng = np.random.default_rng(s)
        poses = np.zeros((ref.shape[0], 3, 7), np.float32)
        poses[:, :, 6] = 1.0
        poses[:, 0, :3] = ref[:, :3] + rng.normal(0, 1.0 + 0.2 * s, (ref.shape[0], 3))
        poses[:, 0, 3:] = ref[:, 3:]
        out.append((poses, np.ones((ref.shape[0], 3), bool)))
    return out


def run_inprocess(data: list[tuple[Any, Any]], chunk: int) -> tuple[float, float]:
    ex = load_exercise(EXERCISE)
    scorers = [SessionScorer(ex.scene["geometry"], ex.reference.tool_pose, ex.rubric, RATE, 0,
                             reference_rate=ex.rate_hz) for _ in data]
    n = data[0][0].shape[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for a in range(0, n, chunk):
        for sc, (poses, valid) in zip(scorers, data, strict=True):
            sc.feed(100.0 + a / RATE, 1 / RATE, poses[a:a + chunk], valid[a:a + chunk])
    for sc in scorers:
        sc.finish()
    return time.perf_counter() - t0, time.process_time() - c0


def run_pool(pool: ScoringPool, data: list[tuple[Any, Any]], chunk: int
             ) -> tuple[float, float]:
    """Wall time and this (the controller's) process CPU time: callers + broker thread."""
    sids = [str(uuid.uuid4()) for _ in data]
    n = data[0][0].shape[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for sid in sids:
        pool.open(sid, EXERCISE, RATE)
    for a in range(0, n, chunk):
        for sid, (poses, valid) in zip(sids, data, strict=True):
            pool.feed(sid, a, 100.0 + a / RATE, 1 / RATE, poses[a:a + chunk], valid[a:a + chunk])
    for sid in sids:
        pool.finish(sid)
    for sid in sids:
        pool.wait_final(sid, 300)
    return time.perf_counter() - t0, time.process_time() - c0


def hop_latency(pool: ScoringPool, data: tuple[Any, Any], chunk: int, n_chunks: int = 300
                ) -> dict[str, float]:
    """One chunk at a time, each waiting for its reply: the round trip of one chunk through
    the broker and a worker (no batching, no pipelining), next to the in-process feed time."""
    ex = load_exercise(EXERCISE)
    poses, valid = data
    sc = SessionScorer(ex.scene["geometry"], ex.reference.tool_pose, ex.rubric, RATE, 0,
                       reference_rate=ex.rate_hz)
    local = []
    for i in range(n_chunks):
        a = i * chunk
        t = time.perf_counter()
        sc.feed(100.0 + a / RATE, 1 / RATE, poses[a:a + chunk], valid[a:a + chunk])
        local.append(time.perf_counter() - t)
    sid = str(uuid.uuid4())
    pool.open(sid, EXERCISE, RATE)
    trips = []
    for i in range(n_chunks):
        a = i * chunk
        t = time.perf_counter()
        pool.feed(sid, a, 100.0 + a / RATE, 1 / RATE, poses[a:a + chunk], valid[a:a + chunk])
        while pool.session_stats(sid)["delivered_seq"] < a + chunk - 1:
            time.sleep(0)
        trips.append(time.perf_counter() - t)
    pool.close_session(sid)
    trips.sort()
    return {"inprocess_feed_us_p50": round(1e6 * statistics.median(local), 1),
            "round_trip_us_p50": round(1e6 * statistics.median(trips), 1),
            "round_trip_us_p99": round(1e6 * trips[int(0.99 * (len(trips) - 1))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--samples", type=int, default=1200)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    data = workload(args.sessions, args.samples)
    total = args.sessions * data[0][0].shape[0]
    chunks = args.sessions * -(-data[0][0].shape[0] // args.chunk)
    from sim_kernels import warmup

    warmup()
    run_inprocess(data[:1], args.chunk)  # first-call costs out of the timing
    pools = {}
    for k in (int(x) for x in args.workers.split(",")):
        pool = ScoringPool().start()
        pool.spawn(k)
        pool.wait_workers(k, 300)
        run_pool(pool, data[:k], args.chunk)  # every worker builds its exercise model once
        pools[f"pool-{k}"] = pool
    times: dict[str, list[float]] = {m: [] for m in ["inprocess", *pools]}
    cpus: dict[str, list[float]] = {m: [] for m in times}
    try:
        for rep in range(args.repeats):  # modes interleaved per repeat: same machine state
            for mode in times:
                t, cpu = (run_inprocess(data, args.chunk) if mode == "inprocess"
                          else run_pool(pools[mode], data, args.chunk))
                times[mode].append(t)
                cpus[mode].append(cpu)
                print(json.dumps({"bench": "scoring_workers", "mode": mode, "repeat": rep,
                                  "sessions": args.sessions, "samples": total,
                                  "chunk": args.chunk, "seconds": round(t, 4),
                                  "samples_per_s": round(total / t),
                                  "controller_cpu_s": round(cpu, 4)}), flush=True)
        first = next(iter(pools.values()))
        lat = hop_latency(first, data[0], args.chunk, min(300, data[0][0].shape[0] // args.chunk))
        print(json.dumps({"bench": "scoring_workers", "mode": "hop_latency", **lat}), flush=True)
    finally:
        for pool in pools.values():
            pool.close()
    med = {m: statistics.median(v) for m, v in times.items()}
    base = med["inprocess"]
    summary: dict[str, Any] = {
        "bench": "scoring_workers", "summary": True, "sessions": args.sessions,
        "samples": total, "chunk": args.chunk, "chunks": chunks, "repeats": args.repeats,
        "median_samples_per_s": {m: round(total / t) for m, t in med.items()},
        "ratio_vs_inprocess": {m: round(base / t, 3) for m, t in med.items()},
        # what scoring costs the controller's own process per chunk (workers elsewhere)
        "controller_cpu_us_per_chunk": {m: round(1e6 * statistics.median(v) / chunks, 1)
                                        for m, v in cpus.items()},
    }
    if "pool-1" in med:
        summary["scaling_vs_pool1"] = {m: round(med["pool-1"] / t, 3) for m, t in med.items()
                                       if m.startswith("pool")}
        # amortised: includes the broker's adaptive batching when callers run ahead
        summary["hop_overhead_us_per_chunk_amortised"] = round(
            1e6 * (med["pool-1"] - base) / chunks, 1)
    summary["hop_latency"] = lat
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
