"""Scoring-kernel benchmarks, side by side with dtaidistance in one run (JSON lines on stdout).

    .venv/bin/python benchmarks/bench_kernels.py            # everything (~2-4 min on 2 cores)
    .venv/bin/python benchmarks/bench_kernels.py --quick    # 600x600 only, fewer repeats
    .venv/bin/python benchmarks/bench_kernels.py --table    # also a markdown table on stderr

Every figure is the median of repeats; ours and the baseline run alternately and the ratio
is the median of the per-pair ratios, because the machine is shared and noisy: compare the
ratios, not absolute times. dtaidistance 2.5.1's pruning sometimes returns
+inf for a finite distance: it is a speed baseline here, never a correctness reference (the
exactness check uses its unpruned result).
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="600x600 only, fewer repeats")
    ap.add_argument("--table", action="store_true", help="markdown summary on stderr")
    args = ap.parse_args()
    warmup()
    sizes = [600] if args.quick else [600, 3600]
    reps = {600: 5 if args.quick else 11, 3600: 3}
    rows = bench_dtw(sizes, reps)
    batch = bench_batch(1000, 300, 3, 3 if args.quick else 5)
    streams = [bench_streaming(120, d, 12, 3 if args.quick else 5) for d in (3, 8)]
    scorer = bench_scorer(3)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
