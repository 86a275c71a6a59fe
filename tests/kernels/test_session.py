"""Session pipeline: gap bridging, chunk invariance, streaming == parallel batch re-scoring,
and the rubric arithmetic worked by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from reference import naive
from scoring.synth import FILLET_GEOMETRY, FILLET_RUBRIC, expert_trace, novice_trace

from sim_kernels.rubric import Rubric
from sim_kernels.scoring import score_from_stats, window_score
from sim_kernels.session import (
    ExerciseModel,
    SessionMetrics,
    fill_gaps_kernel,
    rescore_sessions,
)
from sim_kernels.windows import window_stats

RNG = np.random.default_rng(9)

WEAVE_RUBRIC = {**FILLET_RUBRIC, "rubric_id": "weave-test", "metrics": {
    **FILLET_RUBRIC["metrics"],  # type: ignore[dict-item]
    "weave_amplitude": {"ideal": 2, "min": 1, "max": 3},
    "weave_period": {"ideal": 0.8, "min": 0.5, "max": 1.2},
}}

SPRAY_GEOMETRY: dict[str, Any] = {"point": [0, 0, 0], "normal": [0, 0, 1], "pass_direction": [1, 0, 0],
                  "fan_width_mm": 200.0, "tip_offset": [0, 0, 100]}
SPRAY_RUBRIC = {"rubric_id": "spray-test", "version": 3, "exercise": "flat_panel",
                "process": "spray", "metrics": {
                    "gun_distance": {"ideal": 200, "min": 150, "max": 250},
                    "gun_angle": {"ideal": 90, "min": 80, "max": 90},
                    "gun_speed": {"ideal": 300, "min": 200, "max": 400},
                    "pass_overlap": {"ideal": 50, "min": 40, "max": 60}}}


def _spray_trace(fs: float = 60.0) -> np.ndarray:
    along, cross = [], []
    for k in range(5):
        x = np.arange(0, 600, 300 / fs)
        along.append(x if k % 2 == 0 else x[::-1])
        cross.append(np.full(x.size, -100.0 * k))
        along.append(np.full(15, along[-1][-1]))
        cross.append(np.linspace(-100.0 * k, -100.0 * (k + 1), 15))
    a, c = np.concatenate(along), np.concatenate(cross)
    n = a.size
    tip = np.stack([a, c, np.full(n, 200.0) + RNG.normal(0, 2, n)], axis=1)
    pos = tip + np.array([0, 0, 100.0])  # gun pointing straight down (-z), 100 mm tip offset
    q = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    return np.concatenate([pos, q], axis=1)


def _with_gaps(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = RNG.random(len(p)) > 0.05
    ok[300:340] = False  # one long gap
    ok[-5:] = False  # trailing gap
    p = p.copy()
    p[~ok] = np.nan  # what a rig sends for a lost sample
    return p, ok


def test_fill_gaps_matches_reference() -> None:
    p = expert_trace(duration=3.0)
    for max_gap in (0, 1, 5, 12):
        ok = RNG.random(len(p)) > 0.3
        got, gok, gint = p.copy(), ok.copy(), np.zeros(len(p), bool)
        fill_gaps_kernel(got, gok, max_gap, gint)
        want, wok, wint = naive.fill_gaps(p, ok, max_gap)
        np.testing.assert_array_equal(gok, wok)
        np.testing.assert_array_equal(gint, wint)
        np.testing.assert_allclose(got[wok], want[wok], rtol=1e-12)


@pytest.mark.parametrize("which", ["weld", "weave", "spray"])
def test_streaming_is_chunk_invariant_and_equals_batch(which: str) -> None:
    geo: dict[str, Any]
    if which == "spray":
        rub, geo, fs = Rubric.from_dict(SPRAY_RUBRIC), SPRAY_GEOMETRY, 60.0
        trace = _spray_trace(fs)
        ref = _spray_trace(fs)
    else:
        rub = Rubric.from_dict(FILLET_RUBRIC if which == "weld" else WEAVE_RUBRIC)
        geo, fs = FILLET_GEOMETRY, 120.0
        trace, ref = novice_trace(duration=12.0), expert_trace(duration=10.0)
    model = ExerciseModel.build(rub, geo, fs, ref)
    p, ok = _with_gaps(trace)
    results = []
    for sizes, rows in (([len(p)], 1024), ([12], 1024), ([1, 7, 30, 2], 8)):
        sm = SessionMetrics(model, capacity=64, pose_rows=rows)  # 8: the pose ring rolls
        i = k = 0
        while i < len(p):
            step = sizes[k % len(sizes)]
            sm.feed(p[i:i + step].astype(np.float32), ok[i:i + step])
            i += step
            k += 1
        results.append(repr(sm.finish()))
    assert results[0] == results[1] == results[2]
    batch = rescore_sessions(model, [(p.astype(np.float32), ok), (p.astype(np.float32), ok)])
    assert repr(batch[0]) == results[0] == repr(batch[1])
    s = batch[0]
    assert s.interpolated_samples > 0 and s.gaps >= 2 and s.valid_samples < s.samples
    if which == "spray":  # 5 clean strokes stepping half the fan width: 4 overlaps of 50 %
        clean = rescore_sessions(model, [(trace, np.ones(len(trace), bool))])[0]
        overlap = next(m for m in clean.result.metrics if m.name == "pass_overlap")
        assert overlap.observations == 4
        assert overlap.mean == pytest.approx(50.0, abs=2.0)


def test_windows_equal_batch_window_stats() -> None:
    model = ExerciseModel.build(Rubric.from_dict(FILLET_RUBRIC), FILLET_GEOMETRY, 120.0)
    p = novice_trace(duration=6.0)
    sm = SessionMetrics(model)
    wins = []
    for i in range(0, len(p), 12):
        got, _ = sm.feed(p[i:i + 12], np.ones(len(p[i:i + 12]), bool))
        wins += got
    obs = np.array([[sm.observation(r, j) for j in range(5)] for r in range(sm.rows)])
    want = window_stats(obs, model.lo, model.hi, model.win)
    assert len(wins) == len(want) == 12
    for w, st in zip(wins, want, strict=True):
        np.testing.assert_array_equal(w.stats, st)
        assert w.score == window_score(model.rubric, st)
        assert math.isnan(w.progress)  # no reference


def test_score_arithmetic_by_hand() -> None:
    rub = Rubric.from_dict({
        "rubric_id": "hand", "version": 2, "exercise": "x", "process": "welding",
        "metrics": {"work_angle": {"ideal": 45, "min": 40, "max": 50, "weight": 3},
                    "ctwd": {"ideal": 15, "min": 10, "max": 20, "weight": 1,
                             "std_limit": 4}},
        "smoothness": {"best": -2, "worst": -6},
        "alignment": {"full_at": 0.5, "zero_at": 2.5}})
    # work angle: 100 obs, 80 inside, std 2.5 (limit = half width 5 -> consistency 0.5)
    # ctwd: 50 obs, 25 inside, std 1 (limit 4 -> 0.75)
    stats = np.array([[100, 80, 46.0, 2.5, 100], [50, 25, 15.0, 1.0, 50]], float)
    res = score_from_stats(rub, stats, np.array([5.0, 20.0]), np.array([15.0, 5.0]),
                           sparc=-3.0, expert_rms=1.0)
    tiw = (3 * 0.8 + 1 * 0.5) / 4  # 0.725
    cons = (3 * 0.5 + 1 * 0.75) / 4  # 0.5625
    smooth = (-3.0 + 6.0) / 4.0  # 0.75
    expert = (2.5 - 1.0) / 2.0  # 0.75
    total = 100 * (0.5 * tiw + 0.2 * cons + 0.2 * expert + 0.1 * smooth) / 1.0
    assert res.score == round(total, 2) == 70.0
    assert res.components.time_in_window == 72.5 and res.components.consistency == 56.25
    assert res.components.expert == 75.0 and res.components.smoothness == 75.0
    assert res.passed and res.level == 4 and res.level_name == "四级/中级工"
    # weakest: weighted loss 3 * 0.2 = 0.6 (work angle) vs 1 * 0.5 (ctwd)
    assert res.weakest == "work_angle"
    assert [m.advice for m in res.metrics] == ["too_steep", "too_close"]
    # without a reference the expert weight drops out of the denominator
    res2 = score_from_stats(rub, stats, np.zeros(2), np.zeros(2), -3.0, math.nan)
    assert res2.components.expert is None
    assert res2.score == round(100 * (0.5 * tiw + 0.2 * cons + 0.1 * smooth) / 0.8, 2)
