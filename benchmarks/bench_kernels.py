"""Scoring-kernel benchmarks, side by side with dtaidistance in one run (JSON lines on stdout).

    .venv/bin/python benchmarks/bench_kernels.py            # everything (~2-4 min on 2 cores)
    .venv/bin/python benchmarks/bench_kernels.py --quick    # 600x600 only, fewer repeats
    .venv/bin/python benchmarks/bench_kernels.py --table    # also a markdown table on stderr
    # only the live-scoring case, against the code of another checkout, side by side:
    #   git worktree add /tmp/kern-base <commit>
    .venv/bin/python benchmarks/bench_kernels.py --scorer-only --baseline /tmp/kern-base

Every figure is the median of repeats; ours and the baseline run alternately and the ratio
is the median of the per-pair ratios, because the machine is shared and noisy: compare the
ratios, not absolute times. dtaidistance 2.5.1's pruning sometimes returns
+inf for a finite distance: it is a speed baseline here, never a correctness reference (the
exactness check uses its unpruned result).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from dtaidistance import dtw as dd
from dtaidistance import dtw_ndim as dd_nd

from lab_controller.scoring import SessionScorer
from sim_kernels import StreamingDTW, dtw_batch, dtw_distance, warmup
from sim_kernels.rubric import Rubric


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired(ours: Callable[[], object], theirs: Callable[[], object], repeats: int
           ) -> tuple[float, float, float]:
    """Alternate ours/theirs runs (load drifts on a shared machine hit both alike); return
    the median times and the median of the per-pair ratios theirs/ours."""
    to, tt, ratios = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        ours()
        a = time.perf_counter() - t
        t = time.perf_counter()
        theirs()
        b = time.perf_counter() - t
        to.append(a)
        tt.append(b)
        ratios.append(b / a)
    return statistics.median(to), statistics.median(tt), statistics.median(ratios)


def emit(rec: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(rec, sort_keys=True), flush=True)
    return rec


def band_cells(n: int, m: int, w: int | None) -> int:
    if w is None:
        return n * m
    a, b = max(0, n - m), max(0, m - n)
    return sum(min(m - 1, i + b + w - 1) - max(0, i - a - w + 1) + 1 for i in range(n))


def similar_pair(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two similar series (a random walk and a time-warped, noisy copy): where pruning pays."""
    base = np.cumsum(rng.normal(size=(n, d)), axis=0)
    warp = np.clip(np.arange(n) + 8 * np.sin(np.linspace(0, 6, n)), 0, n - 1)
    other = np.stack([np.interp(warp, np.arange(n), base[:, k]) for k in range(d)], axis=1)
    return base, other + rng.normal(scale=0.1, size=(n, d))


def one_dtw(x: np.ndarray, y: np.ndarray, w: int | None, rep: int) -> dict[str, Any]:
    """One configuration: ours vs dtaidistance (pruning off and on) on the same inputs."""
    n, d = x.shape
    x1, y1 = np.ascontiguousarray(x[:, 0]), np.ascontiguousarray(y[:, 0])

    def dtai(prune: bool) -> float:
        if d == 1:
            return float(dd.distance_fast(x1, y1, window=w, use_pruning=prune))
        return float(dd_nd.distance_fast(x, y, window=w, use_pruning=prune))

    cells = band_cells(n, len(y), w)
    ours = dtw_distance(x, y, window=w)
    ref = dtai(False)
    t_ours, t_np, r_np = paired(lambda: dtw_distance(x, y, window=w), lambda: dtai(False), rep)
    _, t_p, r_p = paired(lambda: dtw_distance(x, y, window=w), lambda: dtai(True), rep)
    return emit({
        "bench": "dtw", "n": n, "d": d, "band": "full" if w is None else "10%",
        "window": w, "cells": cells,
        "ours_mcells_s": round(cells / t_ours / 1e6, 1),
        "dtai_mcells_s": round(cells / t_np / 1e6, 1),
        "dtai_pruned_mcells_s": round(cells / t_p / 1e6, 1),
        "ratio_vs_dtai": round(r_np, 2),
        "ratio_vs_dtai_pruned": round(r_p, 2),
        "rel_diff_vs_dtai": abs(ours - ref) / ref,
        "dtai_pruned_result_inf": bool(np.isinf(dtai(True))),
    })


def bench_dtw(sizes: list[int], repeats: dict[int, int]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        for d in (1, 3, 7):
            x, y = similar_pair(n, d, rng)
            for w in (None, n // 10):
                out.append(one_dtw(x, y, w, repeats[n]))
    return out


def bench_batch(nref: int, length: int, d: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    q = np.cumsum(rng.normal(size=(length, d)), axis=0)
    refs = np.cumsum(rng.normal(size=(nref, length, d)), axis=1)
    w = length // 10
    series = [q, *refs]  # dtaidistance's fastest layout: one block row, C, parallel
    block = ((0, 1), (1, nref + 1))

    def dtai() -> np.ndarray:
        return np.asarray(dd_nd.distance_matrix_fast(series, window=w, parallel=True,
                                                     block=block, compact=True))

    mine = dtw_batch(q, refs, window=w)
    theirs = dtai()
    t_ours, t_dd, ratio = paired(lambda: dtw_batch(q, refs, window=w), dtai, repeats)
    cells = band_cells(length, length, w) * nref
    return emit({
        "bench": "batch_1xN", "n_refs": nref, "length": length, "d": d, "window": w,
        "threads": numba.get_num_threads(),
        "ours_mcells_s": round(cells / t_ours / 1e6, 1),
        "dtai_mcells_s": round(cells / t_dd / 1e6, 1),
        "ratio_vs_dtai": round(ratio, 2),
        "max_rel_diff": float(np.max(np.abs(mine - theirs) / theirs)),
    })


def bench_streaming(band: int, d: int, chunk: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(2)
    ref = np.cumsum(rng.normal(size=(40_000, d)), axis=0)
    x = ref + rng.normal(scale=0.5, size=ref.shape)
    chunks = [x[i:i + chunk] for i in range(0, 24_000, chunk)]

    def run() -> None:
        s = StreamingDTW(ref, window=band)
        for c in chunks:
            s.update(c)

    t = median_time(run, repeats)
    per = t / (len(chunks) * chunk)
    return emit({
        "bench": "streaming", "band": band, "d": d, "chunk": chunk,
        "cells_per_sample": 2 * band - 1,
        "us_per_sample": round(per * 1e6, 3),
        "rigs_per_core_120hz": int(1.0 / (per * 120.0)),
    })


def bench_scorer(repeats: int) -> dict[str, Any]:
    """Whole SessionScorer.feed (12-sample chunks, 6 trackers, expert reference)."""
    rng = np.random.default_rng(3)
    fs = 120.0
    geo = {"line_start": [0, 0, 0], "line_end": [400, 0, 0], "normal": [0, 0, 1],
           "second_normal": [0, 1, 0], "tip_offset": [0, 0, 150]}
    rub = Rubric.from_dict({
        "rubric_id": "bench", "version": 1, "exercise": "bench", "process": "welding",
        "metrics": {"work_angle": {"ideal": 45, "min": 38, "max": 52},
                    "travel_angle": {"ideal": 10, "min": 5, "max": 15},
                    "ctwd": {"ideal": 15, "min": 10, "max": 20},
                    "travel_speed": {"ideal": 6, "min": 4, "max": 8},
                    "aim_offset": {"ideal": 0, "min": -2, "max": 2}}})
    n = int(60 * fs)
    t = np.arange(n) / fs
    h = np.stack([np.zeros(n), np.full(n, np.cos(np.pi / 4)), np.full(n, np.sin(np.pi / 4))], 1)
    axis = -h
    q = np.concatenate([np.cross([0, 0, 1.0], axis), 1 + axis[:, 2:3]], axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    tip = np.stack([10 + 6 * t, np.zeros(n), np.zeros(n)], 1) - 15 * axis
    poses = np.concatenate([tip - 150 * axis, q], 1) + rng.normal(scale=0.05, size=(n, 7))
    chunks = []
    for i in range(0, n, 12):
        p = np.zeros((12, 6, 7), np.float32)
        p[:, 1] = poses[i:i + 12]
        chunks.append((i / fs, p, np.ones((12, 6), bool)))
    scorer0 = SessionScorer(geo, poses, rub, fs, 1)
    model = scorer0.model

    def run() -> None:
        s = SessionScorer.from_model(model, 1)
        for t0, p, v in chunks:
            s.feed(t0, 1 / fs, p, v)

    tm = median_time(run, repeats)
    per_chunk = tm / len(chunks)
    return emit({
        "bench": "session_scorer_feed", "chunk_samples": 12, "reference_blocks":
        int(model.reference.shape[0]), "us_per_chunk": round(per_chunk * 1e6, 1),
        "rigs_per_core_120hz": int(1.0 / (per_chunk * fs / 12)),
    })


#: Live scoring as in the capacity benchmark: 120 Hz rigs sending 20 ms chunks (2 or 3
#: samples: 2, 3, 2, 3, 2 = 12 samples per 100 ms), 6 trackers, the tool is tracker 1.
LIVE_FS = 120.0
LIVE_CHUNKS = (2, 3, 2, 3, 2)
LIVE_TRACKERS = 6
LIVE_TOOL = 1


def _live_session(cues: bool) -> tuple[Any, list[tuple[float, np.ndarray, np.ndarray]]]:
    """The exercise model and a trainee's chunks, read-only like decoded wire frames. The
    trainee is the expert reference plus 1.5 mm tracker noise; with ``cues`` the torch also
    bobs 9 mm along its axis (6 s period), so the contact-tip distance leaves its window and
    cues fire and clear all session long."""
    from lab_controller.exercises import load_exercise
    from sim_kernels.session import ExerciseModel

    ex = load_exercise("fillet_t_joint_h")
    model = ExerciseModel.build(ex.rubric, ex.scene["geometry"], LIVE_FS,
                                ex.reference.tool_pose, ex.rate_hz)
    rng = np.random.default_rng(5)
    ref = ex.reference.tool_pose.astype(np.float64)
    n = ref.shape[0]
    pos = ref[:, :3] + rng.normal(0, 1.5, (n, 3))
    if cues:
        q = ref[:, 3:]  # tool +Z axis = third column of the rotation matrix
        z = np.stack([2 * (q[:, 0] * q[:, 2] + q[:, 1] * q[:, 3]),
                      2 * (q[:, 1] * q[:, 2] - q[:, 0] * q[:, 3]),
                      1 - 2 * (q[:, 0] ** 2 + q[:, 1] ** 2)], 1)
        pos += 9.0 * np.sin(2 * np.pi * np.arange(n) / (6 * LIVE_FS))[:, None] * z
    poses = np.zeros((n, LIVE_TRACKERS, 7), np.float32)
    poses[:, :, 6] = 1.0
    poses[:, LIVE_TOOL, :3] = pos
    poses[:, LIVE_TOOL, 3:] = ref[:, 3:]
    chunks = []
    i = c = 0
    while i < n:
        k = min(LIVE_CHUNKS[c % len(LIVE_CHUNKS)], n - i)
        p = np.frombuffer(poses[i:i + k].tobytes(), np.float32).reshape(k, LIVE_TRACKERS, 7)
        v = np.frombuffer(np.ones((k, LIVE_TRACKERS), bool).tobytes(), np.bool_).reshape(
            k, LIVE_TRACKERS)
        chunks.append((1000.0 + i / LIVE_FS, p, v))
        i += k
        c += 1
    return model, chunks


def _live_round(model: Any, chunks: list[tuple[float, np.ndarray, np.ndarray]]
                ) -> dict[str, Any]:
    """One whole session fed chunk by chunk; per-chunk times (µs) split by whether the chunk
    produced a window or cue."""
    s = SessionScorer.from_model(model, LIVE_TOOL)
    quiet: list[float] = []
    busy: list[float] = []
    nw = nc = 0
    clock = time.perf_counter
    t_all = clock()
    for t0, p, v in chunks:
        t = clock()
        w, c = s.feed(t0, 1 / LIVE_FS, p, v)
        dt = clock() - t
        (busy if w or c else quiet).append(dt)
        nw += len(w)
        nc += len(c)
    t_all = clock() - t_all
    s.finish()
    return {"mean_us": t_all / len(chunks) * 1e6,
            "quiet_median_us": statistics.median(quiet) * 1e6,
            "busy_median_us": statistics.median(busy) * 1e6 if busy else float("nan"),
            "windows": nw, "cues": nc, "chunks": len(chunks)}


def _live_fleet_round(model: Any, chunks: list[tuple[float, np.ndarray, np.ndarray]],
                      rigs: int, n_chunks: int) -> dict[str, Any]:
    """``rigs`` sessions fed round-robin, chunk ``i`` of every rig before chunk ``i + 1``
    (as the controller interleaves its rigs: every session's state is cold in the CPU
    caches); mean µs per chunk over the first ``n_chunks`` chunks of each."""
    scorers = [SessionScorer.from_model(model, LIVE_TOOL) for _ in range(rigs)]
    nw = nc = 0
    t = time.perf_counter()
    for t0, p, v in chunks[:n_chunks]:
        for s in scorers:
            w, c = s.feed(t0, 1 / LIVE_FS, p, v)
            nw += len(w)
            nc += len(c)
    t = time.perf_counter() - t
    return {"mean_us": t / (rigs * n_chunks) * 1e6, "windows": nw, "cues": nc}


def _serve_live() -> int:
    """Child mode: one round per stdin line (a JSON request), one JSON line back each."""
    warmup()
    sessions = {cues: _live_session(cues) for cues in (False, True)}
    for s in (False, True):
        _live_round(*sessions[s])  # first-call costs out of the way
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("rigs"):
            out = _live_fleet_round(*sessions[req["cues"]], req["rigs"], req["n_chunks"])
        else:
            out = _live_round(*sessions[req["cues"]])
        print(json.dumps(out), flush=True)
    return 0


class _LiveChild:
    """A :func:`_serve_live` process importing the project from ``tree`` (None: this one)."""

    def __init__(self, tree: str | None) -> None:
        env = dict(os.environ)
        if tree is not None:
            env["PYTHONPATH"] = os.path.abspath(tree)
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-live"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env, cwd=tree or None)
        assert json.loads(self.ask_line())["ready"]

    def ask_line(self) -> str:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("live-scoring child exited")
        return line

    def round(self, cues: bool, rigs: int = 0, n_chunks: int = 0) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps({"cues": cues, "rigs": rigs, "n_chunks": n_chunks})
                           + "\n")
        self.p.stdin.flush()
        out: dict[str, Any] = json.loads(self.ask_line())
        return out

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()
        self.p.wait(timeout=30)


def _rigs_per_core(mean_us: float) -> int:
    """Rigs at LIVE_FS one core scores: 12 samples per 5 chunks (20 ms chunks at 120 Hz)."""
    return int(1e6 / (mean_us * LIVE_FS * 5 / 12))


def _compare(rec: dict[str, Any], mine: list[dict[str, Any]],
             theirs: list[dict[str, Any]] | None, keys: tuple[str, ...]) -> None:
    """Rigs per core, and with a baseline its medians of `keys`, the median per-pair ratio
    baseline/ours of the mean per-chunk time and whether both produced the same output."""
    rec["rigs_per_core"] = _rigs_per_core(rec["mean_us"])
    if theirs is None:
        return
    for key in keys:
        rec["baseline_" + key] = round(statistics.median(r[key] for r in theirs), 2)
    rec["baseline_rigs_per_core"] = _rigs_per_core(rec["baseline_mean_us"])
    rec["ratio_baseline_over_ours"] = round(statistics.median(
        b["mean_us"] / a["mean_us"] for a, b in zip(mine, theirs, strict=True)), 2)
    rec["same_windows_and_cues_as_baseline"] = all(
        (a["windows"], a["cues"]) == (b["windows"], b["cues"])
        for a, b in zip(mine, theirs, strict=True))


def bench_live_scorer(repeats: int, baseline: str | None) -> list[dict[str, Any]]:
    """SessionScorer.feed with 20 ms chunks at 120 Hz, 6 trackers (the controller's live
    scoring), per chunk; with ``baseline`` (another checkout) run side by side: the two
    processes take turns, one whole session each, and the ratio is the median of the
    per-pair ratios baseline/ours of the mean per-chunk time."""
    ours = _LiveChild(None)
    base = _LiveChild(baseline) if baseline else None
    out = []
    try:
        for cues in (False, True):
            mine: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            for _ in range(repeats):
                mine.append(ours.round(cues))
                if base is not None:
                    theirs.append(base.round(cues))
            rec: dict[str, Any] = {
                "bench": "session_scorer_feed_20ms", "fs": LIVE_FS, "trackers": LIVE_TRACKERS,
                "samples_per_chunk": 12 / 5, "cue_trace": cues,
                "chunks": mine[0]["chunks"], "windows": mine[0]["windows"],
                "cues": mine[0]["cues"],
                "load_avg_1min": round(os.getloadavg()[0], 2)}
            for key in ("mean_us", "quiet_median_us", "busy_median_us"):
                rec[key] = round(statistics.median(r[key] for r in mine), 2)
            _compare(rec, mine, theirs if base is not None else None,
                     ("mean_us", "quiet_median_us", "busy_median_us"))
            out.append(emit(rec))
        # the capacity benchmark's shape: 200 rigs interleaved, 10 s (500 chunks) each
        rigs, n_chunks = 200, 500
        mine = []
        theirs = []
        for _ in range(max(1, repeats // 3)):
            mine.append(ours.round(True, rigs, n_chunks))
            if base is not None:
                theirs.append(base.round(True, rigs, n_chunks))
        rec = {"bench": "session_scorer_feed_20ms_interleaved", "rigs": rigs,
               "chunks_per_rig": n_chunks, "fs": LIVE_FS, "trackers": LIVE_TRACKERS,
               "cue_trace": True, "windows": mine[0]["windows"], "cues": mine[0]["cues"],
               "mean_us": round(statistics.median(r["mean_us"] for r in mine), 2),
               "load_avg_1min": round(os.getloadavg()[0], 2)}
        _compare(rec, mine, theirs if base is not None else None, ("mean_us",))
        out.append(emit(rec))
    finally:
        ours.close()
        if base is not None:
            base.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="600x600 only, fewer repeats")
    ap.add_argument("--table", action="store_true", help="markdown summary on stderr")
    ap.add_argument("--scorer-only", action="store_true",
                    help="only the live SessionScorer.feed case (20 ms chunks)")
    ap.add_argument("--baseline", metavar="TREE",
                    help="a checkout of other code to run the live case against, side by side")
    ap.add_argument("--repeats", type=int, default=9, help="live-case rounds (sessions)")
    ap.add_argument("--serve-live", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_live:
        return _serve_live()
    if args.scorer_only:
        bench_live_scorer(args.repeats, args.baseline)
        return 0
    warmup()
    sizes = [600] if args.quick else [600, 3600]
    reps = {600: 5 if args.quick else 11, 3600: 3}
    rows = bench_dtw(sizes, reps)
    batch = bench_batch(1000, 300, 3, 3 if args.quick else 5)
    streams = [bench_streaming(120, d, 12, 3 if args.quick else 5) for d in (3, 8)]
    scorer = bench_scorer(3)
    live = bench_live_scorer(args.repeats, args.baseline)
    if args.table:
        err = sys.stderr
        print("| n | d | band | ours Mc/s | dtai Mc/s | dtai pruned Mc/s | vs dtai | "
              "vs pruned |", file=err)
        print("|---|---|---|---|---|---|---|---|", file=err)
        for r in rows:
            print(f"| {r['n']} | {r['d']} | {r['band']} | {r['ours_mcells_s']} | "
                  f"{r['dtai_mcells_s']} | {r['dtai_pruned_mcells_s']} | "
                  f"{r['ratio_vs_dtai']} | {r['ratio_vs_dtai_pruned']} |", file=err)
        print(f"batch 1x{batch['n_refs']}: ratio {batch['ratio_vs_dtai']}", file=err)
        for s in streams:
            print(f"streaming d={s['d']} band {s['band']}: {s['us_per_sample']} us/sample, "
                  f"{s['rigs_per_core_120hz']} rigs/core", file=err)
        print(f"SessionScorer.feed: {scorer['us_per_chunk']} us/chunk, "
              f"{scorer['rigs_per_core_120hz']} rigs/core", file=err)
        for r in live:
            print(f"SessionScorer.feed, 20 ms chunks at 120 Hz, 6 trackers"
                  f"{' (cue trace)' if r['cue_trace'] else ''}: {r['mean_us']} us/chunk, "
                  f"{r['rigs_per_core']} rigs/core"
                  + (f", baseline {r['baseline_mean_us']} us/chunk, ratio "
                     f"{r['ratio_baseline_over_ours']}" if 'baseline_mean_us' in r else ""),
                  file=err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
