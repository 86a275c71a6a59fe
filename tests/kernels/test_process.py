"""Process parameters against the naive vector-math reference and known constructions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import naive
from scoring.synth import FILLET_GEOMETRY, fillet_poses, quat_from_z_to

from sim_kernels.process import (
    SprayGeometry,
    WeldGeometry,
    lagged_speed,
    spray_passes,
    spray_sample_params,
    tool_frames,
    weave,
    weld_sample_params,
)

RNG = np.random.default_rng(11)


def _random_poses(n: int) -> tuple[np.ndarray, np.ndarray]:
    pos = RNG.normal(scale=100, size=(n, 3))
    q = RNG.normal(size=(n, 4))
    q *= RNG.uniform(0.5, 2.0, size=(n, 1))  # unnormalised on purpose: kernels normalise
    return pos, q


def test_tool_frames_match_quaternion_sandwich() -> None:
    pos, q = _random_poses(50)
    off = np.array([3.0, -4.0, 150.0])
    tip, axis = tool_frames(pos, q, off)
    want_tip, want_axis = naive.tool(pos, q, off)
    np.testing.assert_allclose(tip, want_tip, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(axis, want_axis, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fillet", [True, False])
def test_weld_params_match_reference(fillet: bool) -> None:
    pos, q = _random_poses(80)
    g = {"line_start": [5.0, -3.0, 1.0], "line_end": [250.0, 20.0, -4.0],
         "normal": [0.1, 0.0, 1.0], "tip_offset": [0.0, 2.0, 120.0]}
    if fillet:
        g["second_normal"] = [0.0, 1.0, 0.2]
    geo = WeldGeometry.from_dict(g)
    got = weld_sample_params(pos, q, geo)
    want = naive.weld_params(pos, q, geo.line_start, geo.line_end, geo.normal,
                             geo.second_normal, geo.tip_offset)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_weld_params_recover_the_construction() -> None:
    n = 200
    work = RNG.uniform(20, 70, n)
    travel = RNG.uniform(-20, 25, n)
    ctwd = RNG.uniform(8, 25, n)
    along = RNG.uniform(0, 300, n)
    aim = RNG.uniform(-3, 3, n)
    p = fillet_poses(work, travel, ctwd, along, aim)
    got = weld_sample_params(p[:, :3], p[:, 3:], WeldGeometry.from_dict(FILLET_GEOMETRY))
    np.testing.assert_allclose(got[:, 0], work, atol=1e-9)
    np.testing.assert_allclose(got[:, 1], travel, atol=1e-9)
    np.testing.assert_allclose(got[:, 2], ctwd, atol=1e-9)
    np.testing.assert_allclose(got[:, 3], aim, atol=1e-9)


def test_butt_weld_conventions() -> None:
    # torch straight down, 15 mm above a line along +x, 2 mm to the right of travel (-y)
    geo = WeldGeometry.from_dict({"line_start": [0, 0, 0], "line_end": [1, 0, 0],
                                  "normal": [0, 0, 1]})
    q = np.array([[1.0, 0.0, 0.0, 0.0]])  # 180° about x: +Z -> -Z
    out = weld_sample_params(np.array([[50.0, -2.0, 15.0]]), q, geo)[0]
    assert out == pytest.approx([90.0, 0.0, 15.0, 2.0, 50.0], abs=1e-12)
    # push: tip ahead of the handle along travel
    a = np.array([[math.sin(math.radians(10)), 0.0, -math.cos(math.radians(10))]])
    out = weld_sample_params(np.array([[0.0, 0.0, 15.0]]), quat_from_z_to(a), geo)[0]
    assert out[1] == pytest.approx(10.0)


def test_spray_params_match_reference() -> None:
    pos, q = _random_poses(60)
    geo = SprayGeometry.from_dict({"point": [0, 0, 10], "normal": [0, -1, 0.1],
                                   "pass_direction": [1, 0, 0], "fan_width_mm": 250,
                                   "tip_offset": [0, 0, 30]})
    got = spray_sample_params(pos, q, geo)
    want = naive.spray_params(pos, q, geo.point, geo.normal, geo.pass_direction,
                              geo.tip_offset)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_lagged_speed_matches_reference() -> None:
    c1 = np.cumsum(RNG.normal(size=100))
    c3 = np.cumsum(RNG.normal(size=(100, 3)), axis=0)
    for c in (c1, c3):
        for lag_s in (0.001, 0.1, 0.5, 5.0):
            lag = max(1, round(lag_s * 120.0))
            np.testing.assert_allclose(lagged_speed(c, 120.0, lag_s),
                                       naive.lagged_speed(c, 120.0, lag), rtol=1e-12)
    assert lagged_speed(np.array([3.0]), 120.0, 0.5)[0] == 0.0


def test_weave_sine_and_reference() -> None:
    fs = 120.0
    t = np.arange(0, 4, 1 / fs)
    y = 0.5 * t + 2.5 * np.sin(2 * np.pi * t / 0.8)  # drift + 2.5 mm, 0.8 s weave
    amp, per = weave(y, fs, 4.0)[0]
    assert amp == pytest.approx(2.5, rel=0.02)
    assert per == pytest.approx(0.8, rel=0.02)
    for _ in range(20):
        z = RNG.normal(size=int(RNG.integers(1, 200))) * RNG.uniform(0.1, 3)
        got = weave(z, fs, 10.0)[0]
        want = naive.weave(z, fs, 0.3)
        assert got[0] == pytest.approx(want[0], rel=1e-9, abs=1e-12)
        assert (math.isnan(got[1]) and math.isnan(want[1])) or got[1] == pytest.approx(want[1])
    flat = weave(np.zeros(100), fs, 1.0)[0]
    assert flat[0] == 0.0 and math.isnan(flat[1])


def test_spray_passes_and_overlap() -> None:
    fs = 60.0
    geo = SprayGeometry.from_dict({"point": [0, 0, 0], "normal": [0, 0, 1],
                                   "pass_direction": [1, 0, 0], "fan_width_mm": 200})
    # 4 strokes of 600 mm at 300 mm/s, stepping 100 mm down between strokes (50 % overlap)
    along, cross = [], []
    for k in range(4):
        x = np.arange(0, 600, 300 / fs)
        along.append(x if k % 2 == 0 else x[::-1])
        cross.append(np.full(x.size, -100.0 * k))
        along.append(np.full(20, along[-1][-1]))  # turn-around pause
        cross.append(np.linspace(-100.0 * k, -100.0 * (k + 1), 20))
    a, c = np.concatenate(along), np.concatenate(cross)
    p, overlap = spray_passes(a, c, fs, geo)
    assert len(p) == 4
    np.testing.assert_allclose(overlap, 50.0, atol=1.0)
    want = naive.passes(a, c, fs, max(1, round(0.1 * fs)), 50.0, 100.0)
    assert [(int(s), int(e)) for s, e, _ in p] == [(s, e) for s, e, _ in want]
    np.testing.assert_allclose(p[:, 2], [m for _, _, m in want], rtol=1e-12)


def test_geometry_validation() -> None:
    with pytest.raises(ValueError, match="zero vector"):
        WeldGeometry.from_dict({"line_start": [0, 0, 0], "line_end": [0, 0, 0],
                                "normal": [0, 0, 1]})
    with pytest.raises(ValueError, match="3 numbers"):
        WeldGeometry.from_dict({"line_start": [0, 0], "line_end": [1, 0, 0],
                                "normal": [0, 0, 1]})
    with pytest.raises(ValueError, match="parallel"):
        WeldGeometry.from_dict({"line_start": [0, 0, 0], "line_end": [1, 0, 0],
                                "normal": [1, 0, 0]}).frame()
    with pytest.raises(ValueError, match="NaN or inf"):
        SprayGeometry.from_dict({"point": [0, 0, np.nan], "normal": [0, 0, 1],
                                 "pass_direction": [1, 0, 0], "fan_width_mm": 1})
    with pytest.raises(ValueError, match="fan_width"):
        SprayGeometry.from_dict({"point": [0, 0, 0], "normal": [0, 0, 1],
                                 "pass_direction": [1, 0, 0], "fan_width_mm": 0})


def test_pose_validation() -> None:
    pos, q = _random_poses(5)
    q[2] = 0.0
    with pytest.raises(ValueError, match="zero norm"):
        tool_frames(pos, q)
    q[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        tool_frames(pos, q)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        tool_frames(pos[:, :2], _random_poses(5)[1])
