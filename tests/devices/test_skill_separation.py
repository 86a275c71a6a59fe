"""Scored with the real scorer (`lab_controller.scoring.SessionScorer`), seeded simulated
sessions order expert > intermediate > novice, and cues reduce a novice's time out of window."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from devices.sim import TraineeMotion, skill_by_name
from lab_controller.exercises import load_exercise
from lab_controller.scoring import FinalResult, SessionScorer
from sim_kernels.session import ExerciseModel

RATE = 120.0
BLOCK = 30  # 0.25 s per chunk, as the simulated rig generates them


@lru_cache(maxsize=8)
def _model(ex_id: str) -> ExerciseModel:
    ex = load_exercise(ex_id)
    return ExerciseModel.build(ex.rubric, ex.scene["geometry"], RATE,
                               ex.reference.tool_pose, ex.rate_hz)


def run_session(ex_id: str, skill: str, seed: int, cues: bool) -> tuple[FinalResult, int]:
    """One whole exercise, chunk by chunk through the scorer; live cues fed back if asked."""
    ex = load_exercise(ex_id)
    sim = TraineeMotion(ex.scene, skill_by_name(skill), trackers=("tool",), seed=seed)
    scorer = SessionScorer.from_model(_model(ex_id), tool_index=0)
    k = heard = 0
    while True:
        t = (k + np.arange(BLOCK)) / RATE
        poses, _analog, valid = sim.generate(t)
        keep = t <= sim.finished_at
        if keep.any():
            _windows, cue_list = scorer.feed(float(t[0]), 1.0 / RATE, poses[keep], valid[keep])
            if cues:
                for c in cue_list:
                    if c.active and sim.cue(c.parameter, at=c.rig_time):
                        heard += 1
        k += BLOCK
        if not keep.all():
            return scorer.finish(), heard


def _out_of_window(r: FinalResult) -> float:
    """Weighted mean fraction of time outside the windows (what cues try to reduce)."""
    w = np.array([m.weight for m in r.metrics])
    f = np.array([m.fraction_in_window for m in r.metrics])
    return float(1.0 - np.sum(w * f) / np.sum(w))


@pytest.mark.slow
@pytest.mark.parametrize(("ex_id", "n"), [("fillet_t_joint_h", 20), ("butt_weave_flat", 6),
                                          ("spray_panel_flat", 6)])
def test_scores_order_skill_levels(ex_id: str, n: int) -> None:
    scores = {s: np.array([run_session(ex_id, s, seed, cues=False)[0].score
                           for seed in range(n)])
              for s in ("expert", "intermediate", "novice")}
    e, i, v = scores["expert"], scores["intermediate"], scores["novice"]
    summary = {k: (round(float(x.min()), 1), round(float(np.median(x)), 1),
                   round(float(x.max()), 1)) for k, x in scores.items()}
    assert np.median(e) > np.median(i) > np.median(v), summary
    assert e.mean() > i.mean() > v.mean(), summary
    assert e.min() > v.max(), f"expert and novice overlap: {summary}"
    assert e.min() > i.mean() and v.max() < e.min(), summary
    assert (e >= 60).all(), f"every expert passes: {summary}"


@pytest.mark.slow
def test_cues_reduce_novice_time_out_of_window() -> None:
    ex_id = "fillet_t_joint_h"
    without, with_cues, heard = [], [], []
    for seed in range(10):
        r0, _ = run_session(ex_id, "novice", seed, cues=False)
        r1, h = run_session(ex_id, "novice", seed, cues=True)
        without.append(_out_of_window(r0))
        with_cues.append(_out_of_window(r1))
        heard.append(h)
    a, b = np.array(without), np.array(with_cues)
    assert min(heard) > 0
    assert b.mean() < a.mean() - 0.05, (a.mean(), b.mean())
    assert (b < a).sum() >= 8, list(zip(a.round(3), b.round(3), strict=True))
