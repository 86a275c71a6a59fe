"""SessionScorer: the controller's per-session scoring glue, on synthetic expert-like and
novice-like fillet welds generated here (no mocks: the real kernels run)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from lab_controller.scoring import Cue, FinalResult, ScoreWindow, SessionScorer
from scoring.synth import FILLET_GEOMETRY, FILLET_RUBRIC, expert_trace, novice_trace
from sim_kernels.rubric import Rubric

FS = 120.0
TOOL = 1
TRACKERS = 3


def _chunks(trace: np.ndarray, valid: np.ndarray | None = None, size: int = 12,
            t0: float = 1000.0) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Rig chunks: (rig_time_first, poses (n, trackers, 7) float32, valid (n, trackers))."""
    out = []
    for i in range(0, len(trace), size):
        blk = trace[i:i + size]
        poses = np.zeros((len(blk), TRACKERS, 7), np.float32)
        poses[:, TOOL] = blk
        poses[:, 0, 6] = 1.0  # head tracker, ignored
        ok = np.ones((len(blk), TRACKERS), bool)
        if valid is not None:
            ok[:, TOOL] = valid[i:i + size]
            poses[~ok[:, TOOL], TOOL] = np.nan
        out.append((t0 + i / FS, poses, ok))
    return out


Run = tuple[list[ScoreWindow], list[Cue], FinalResult]


def _run(trace: np.ndarray, valid: np.ndarray | None = None) -> Run:
    scorer = SessionScorer(FILLET_GEOMETRY, expert_trace(seed=42), Rubric.from_dict(FILLET_RUBRIC),
                           FS, TOOL)
    windows: list[ScoreWindow] = []
    cues: list[Cue] = []
    for t0, poses, ok in _chunks(trace, valid):
        w, c = scorer.feed(t0, 1 / FS, poses, ok)
        windows += w
        cues += c
    return windows, cues, scorer.finish()


@pytest.fixture(scope="module")
def expert_run() -> Run:
    return _run(expert_trace(seed=1))


@pytest.fixture(scope="module")
def novice_run() -> Run:
    return _run(novice_trace(seed=2))


def test_expert_scores_higher_than_novice(expert_run: Run, novice_run: Run) -> None:
    e, n = expert_run[2], novice_run[2]
    assert e.score > 90 and e.passed and e.level in (1, 2)
    assert n.score < 50 and not n.passed and n.level is None
    assert e.components.time_in_window > n.components.time_in_window
    assert e.components.consistency > n.components.consistency
    assert e.components.expert is not None and n.components.expert is not None
    assert e.components.expert > n.components.expert
    assert e.expert_rms < n.expert_rms
    assert e.progress > 0.95  # the expert finishes the reference path
    assert n.weakest_parameter in {m.name for m in n.metrics}
    assert {m.name for m in e.metrics} == set(Rubric.from_dict(FILLET_RUBRIC).metric_names())
    assert e.data_quality.interpolated_fraction == 0.0 and e.data_quality.gaps == 0


def test_windows_carry_rig_time_progress_and_stats(expert_run: Run) -> None:
    windows = expert_run[0]
    assert len(windows) == 60  # 30 s in 0.5 s windows
    assert windows[0].rig_time == pytest.approx(1000.0)
    assert windows[1].rig_time - windows[0].rig_time == pytest.approx(0.5)
    prog = [w.progress for w in windows]
    assert prog[-1] > 0.9 and prog[5] < 0.2
    assert all(b >= a - 0.05 for a, b in itertools.pairwise(prog))
    w = windows[10]
    assert w.metrics["work_angle"].mean == pytest.approx(45.0, abs=1.5)
    assert w.metrics["work_angle"].observations == 60
    assert w.metrics["ctwd"].fraction_in_window == 1.0
    assert 90 <= w.score <= 100 and w.duration_s == 0.5


def test_cues_fire_with_hysteresis(expert_run: Run, novice_run: Run) -> None:
    assert expert_run[1] == []  # a steady expert is never nagged
    cues = novice_run[1]
    assert len(cues) > 5
    times = [c.rig_time for c in cues]
    assert times == sorted(times)
    state: dict[str, str] = {}
    for c in cues:
        if c.active:
            assert state.get(c.parameter) != c.direction  # never the same cue twice in a row
            assert c.severity in ("warning", "critical") and c.message
            state[c.parameter] = c.direction
        else:
            assert c.parameter in state and c.direction == "ok" and c.severity == "info"
            del state[c.parameter]
    # dwell 0.5 s + hysteresis: far fewer cue changes than out-of-window samples
    per_param = {p: sum(1 for c in cues if c.parameter == p) for p in state | {}}
    assert all(v < 40 for v in per_param.values())
    assert len(cues) < 0.02 * len(novice_trace(seed=2))


def test_gaps_are_bridged_and_reported() -> None:
    trace = expert_trace(seed=3, duration=10.0)
    valid = np.ones(len(trace), bool)
    valid[100:104] = False  # short: bridged
    valid[500:560] = False  # 0.5 s: left out
    _, _, res = _run(trace, valid)
    dq = res.data_quality
    assert dq.interpolated_fraction == pytest.approx(4 / len(trace))
    assert dq.gap_fraction == pytest.approx(60 / len(trace))
    assert dq.gaps == 1 and dq.longest_gap_s == pytest.approx(0.5)
    assert res.score > 85


def test_input_validation() -> None:
    scorer = SessionScorer(FILLET_GEOMETRY, None, Rubric.from_dict(FILLET_RUBRIC), FS, TOOL)
    t0, poses, ok = _chunks(expert_trace(duration=1.0))[0]
    with pytest.raises(ValueError, match="trackers"):
        scorer.feed(t0, 1 / FS, poses[:, :, :6], ok)
    with pytest.raises(ValueError, match="Hz"):
        scorer.feed(t0, 1 / 90.0, poses, ok)
    with pytest.raises(ValueError, match="tool tracker"):
        SessionScorer(FILLET_GEOMETRY, None, Rubric.from_dict(FILLET_RUBRIC), FS, 5).feed(
            t0, 1 / FS, poses, ok)
    w, c = scorer.feed(t0, 1 / FS, poses, ok)
    assert w == [] and c == []
    res = scorer.finish()
    assert res.components.expert is None and math.isnan(res.progress)
    with pytest.raises(ValueError, match="finished"):
        scorer.feed(t0, 1 / FS, poses, ok)
    with pytest.raises(ValueError, match="finished"):
        scorer.finish()
    with pytest.raises(ValueError, match="line_end"):
        SessionScorer({"line_start": [0, 0, 0]}, None, Rubric.from_dict(FILLET_RUBRIC), FS, 0)


def test_scorer_imports_no_io_libraries() -> None:
    code = ("import sys, lab_controller.scoring; "
            "bad = [m for m in ('zmq', 'psycopg', 'devices', 'telemetry') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_window_metric_cues_dwell_in_time() -> None:
    """A weave metric is observed once per 0.5 s window, so its 0.5 s dwell is one window."""
    rub = Rubric.from_dict({**FILLET_RUBRIC, "metrics": {
        **FILLET_RUBRIC["metrics"],  # type: ignore[dict-item]
        "weave_amplitude": {"ideal": 2, "min": 1, "max": 3},
        "weave_period": {"ideal": 0.8, "min": 0.5, "max": 1.2}}})
    scorer = SessionScorer(FILLET_GEOMETRY, None, rub, FS, TOOL)
    cues: list[Cue] = []
    for t0, poses, ok in _chunks(expert_trace(seed=4, duration=5.0)):  # no weave at all
        cues += scorer.feed(t0, 1 / FS, poses, ok)[1]
    first = {c.parameter: c for c in reversed(cues) if c.active}
    assert first["weave_amplitude"].direction == "weave_too_narrow"
    assert first["weave_period"].direction == "weave_too_slow"  # no weave: infinite period
    assert first["weave_amplitude"].rig_time - 1000.0 < 1.0
    res = scorer.finish()
    amp = next(m for m in res.metrics if m.name == "weave_amplitude")
    assert amp.observations == 10 and amp.fraction_in_window == 0.0
