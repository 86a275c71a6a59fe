"""The exercise library: files, rubrics, deterministic references, kernel conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab_controller.exercises import (
    DATA_DIR,
    ExerciseNotFound,
    exercise_ids,
    load_exercise,
    scene_for,
)
from sim_kernels.process import (
    SprayGeometry,
    WeldGeometry,
    spray_sample_params,
    weld_sample_params,
)
from sim_kernels.rubric import Rubric

ROOT = Path(__file__).resolve().parents[2]


def test_library_contents_and_sizes() -> None:
    ids = exercise_ids()
    kinds = {load_exercise(i).kind for i in ids}
    assert {"weld_fillet", "weld_butt_weave", "spray_panel"} <= kinds
    for f in DATA_DIR.glob("*/*"):
        assert f.stat().st_size < 500_000, f
    with pytest.raises(ExerciseNotFound):
        load_exercise("no_such_exercise")


@pytest.mark.parametrize("ex_id", exercise_ids())
def test_exercise_loads_and_rubric_validates(ex_id: str) -> None:
    ex = load_exercise(ex_id)
    assert isinstance(ex.rubric, Rubric) and ex.rubric.exercise == ex_id
    text = (DATA_DIR / ex_id / "rubric.json").read_text(encoding="utf-8")
    assert Rubric.from_json(text) == ex.rubric
    ref = ex.reference
    assert ref.tool_pose.shape == (ref.n, 7) and ref.trigger.shape == (ref.n,)
    assert np.all(np.diff(ref.t) > 0)
    assert ref.t[-1] == pytest.approx(ex.nominal_duration_s, abs=0.01)
    assert ex.rate_hz == 120.0
    assert not ref.tool_pose.flags.writeable
    scene = scene_for(ex_id)
    scene["kind"] = "changed"
    assert load_exercise(ex_id).scene["kind"] == ex.kind  # callers get a copy


@pytest.mark.parametrize("ex_id", exercise_ids())
def test_expert_reference_sits_in_the_rubric_windows(ex_id: str) -> None:
    """The reference, measured by the kernels' own parameter code, is inside every window."""
    ex = load_exercise(ex_id)
    ref = ex.reference
    on = ref.trigger > 0.5
    g = ex.scene["geometry"]
    names: tuple[str, ...]
    if ex.kind == "spray_panel":
        p = spray_sample_params(ref.tool_pose[:, :3], ref.tool_pose[:, 3:],
                                SprayGeometry.from_dict(g))
        names = ("gun_distance", "gun_angle")
    else:
        p = weld_sample_params(ref.tool_pose[:, :3], ref.tool_pose[:, 3:],
                               WeldGeometry.from_dict(g))
        names = ("work_angle", "travel_angle", "ctwd")
    for col, name in enumerate(names):
        rule = ex.rubric.metrics[name]  # type: ignore[index]
        inside = (p[on, col] >= rule.min) & (p[on, col] <= rule.max)
        assert inside.mean() > 0.97, (name, inside.mean())
        assert abs(np.mean(p[on, col]) - rule.ideal) < 0.3 * (rule.max - rule.min)


def test_regeneration_is_byte_identical() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_exercises.py"),
                           "--check"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
