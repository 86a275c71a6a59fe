"""SPARC/LDLJ against monalysa (the SPARC authors' package) and the naive references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from monalysa.quality.smoothness import log_dimensionless_jerk as m_ldlj
from monalysa.quality.smoothness import sparc as m_sparc
from reference import naive

from sim_kernels.motion import (
    ldlj,
    motion_quality,
    motion_quality_batch,
    movement_span,
    resample,
    sparc,
    speed_from_positions,
    submovements,
)

RNG = np.random.default_rng(5)


def _profiles(fs: float) -> dict[str, np.ndarray]:
    """Minimum-jerk reach, three overlapping sub-movements, and a tremor-laden reach."""
    t = np.arange(0, 1 + 1e-12, 1 / fs)
    tau = t / t[-1]
    mj = 30 * tau ** 4 - 60 * tau ** 3 + 30 * tau ** 2
    tt = np.arange(0, 3, 1 / fs)
    multi = sum(np.exp(-(((tt - c) / 0.18) ** 2)) for c in (0.8, 1.5, 2.2))
    tremor = (np.interp(tt, np.linspace(0, 3, t.size), mj)
              + 0.3 * np.sin(2 * np.pi * 6.0 * tt) + 0.05 * RNG.normal(size=tt.size))
    return {"min_jerk": mj, "multi_peak": multi, "tremor": np.abs(tremor)}


@pytest.mark.parametrize("fs", [90.0, 100.0, 120.0])
def test_sparc_and_ldlj_match_monalysa(fs: float) -> None:
    for name, v in _profiles(fs).items():
        assert sparc(v, fs) == pytest.approx(m_sparc(v, fs)[0], rel=1e-9), name
        assert ldlj(v, fs) == pytest.approx(m_ldlj(v, fs, "vel"), rel=1e-9), name
        vel = np.stack([v, -0.5 * v, np.sin(3 * v)], axis=1)
        assert ldlj(vel, fs) == pytest.approx(m_ldlj(vel, fs, "vel"), rel=1e-9), name
        assert sparc(v, fs) == pytest.approx(naive.sparc(v, fs), rel=1e-9)
        assert ldlj(v, fs) == pytest.approx(naive.ldlj(v, fs), rel=1e-12)


def test_smoother_scores_higher() -> None:
    p = _profiles(100.0)
    assert sparc(p["min_jerk"], 100.0) > sparc(p["multi_peak"], 100.0)
    assert sparc(p["min_jerk"], 100.0) > sparc(p["tremor"], 100.0)
    assert ldlj(p["min_jerk"], 100.0) > ldlj(p["tremor"], 100.0)


def test_segmentation_rule_pinned() -> None:
    """Rest padding moves LDLJ a lot and SPARC hardly; the span rule removes the padding."""
    fs = 100.0
    mj = _profiles(fs)["min_jerk"]
    padded = np.concatenate([np.zeros(150), mj, np.zeros(150)])
    assert abs(sparc(padded, fs) - sparc(mj, fs)) < 0.01
    assert abs(ldlj(padded, fs) - ldlj(mj, fs)) > 2.0
    s, e = movement_span(padded, rel_threshold=0.05)
    assert (s, e) == naive.span(padded, 0.05, 0.0)
    assert s >= 150 and e <= 150 + mj.size
    # the trimmed span keeps everything above 5 % of the peak
    assert padded[s] >= 0.05 * padded.max() > padded[s - 1]
    pos = np.cumsum(np.stack([padded, 0 * padded, 0 * padded], axis=1), axis=0) / fs * 100
    mq = motion_quality(pos, fs, smooth_s=0.0, idle_speed=0.0)
    speed = speed_from_positions(pos, fs, 0.0)  # central differences of the track
    s, e = movement_span(speed, rel_threshold=0.05)
    assert (mq.movement_start, mq.movement_end) == (s, e)
    assert abs(s - 150) <= 10 and abs(e - (150 + mj.size)) <= 10
    assert mq.ldlj == pytest.approx(ldlj(speed[s:e], fs), rel=1e-9)
    assert mq.sparc == pytest.approx(sparc(speed[s:e], fs), rel=1e-9)


def test_motion_quality_parts_match_reference() -> None:
    fs = 120.0
    pos = np.cumsum(RNG.normal(size=(400, 3)), axis=0)
    mq = motion_quality(pos, fs, smooth_s=0.05, idle_speed=2.0)
    half = round(0.05 * fs) // 2
    sm, speed = naive.smooth_speed(pos, fs, half)
    np.testing.assert_allclose(speed_from_positions(pos, fs, 0.05), speed, rtol=1e-12)
    assert mq.path_length_mm == pytest.approx(np.linalg.norm(np.diff(sm, axis=0), axis=1).sum())
    assert mq.idle_time_s == pytest.approx(np.sum(speed < 2.0) / fs)
    assert mq.submovements == naive.submovements(speed, max(0.1 * speed.max(), 2.0))
    s, e = naive.span(speed, 0.05, 2.0)
    assert mq.sparc == pytest.approx(naive.sparc(speed[s:e], fs), rel=1e-9)
    batch = motion_quality_batch([pos, pos[:100], pos[50:]], fs)
    assert batch[0] == mq
    assert batch[1] == motion_quality(pos[:100], fs)


def test_submovements_reference() -> None:
    for _ in range(30):
        v = np.abs(np.cumsum(RNG.normal(size=200)))
        prom = float(RNG.uniform(0.5, 5))
        assert submovements(v, prom) == naive.submovements(v, prom)
    assert submovements(np.ones(50), 0.1) == 0  # constant speed: no peaks


def test_edges_and_rejections() -> None:
    assert math.isnan(sparc(np.zeros(20), 100.0))  # no motion
    assert sparc(np.ones(20), 100.0) == pytest.approx(m_sparc(np.ones(20), 100.0)[0], rel=1e-9)
    assert sparc(np.array([1.0]), 100.0) != 0.0 or True  # length 1 runs
    with pytest.raises(ValueError, match="3 samples"):
        ldlj(np.ones(2), 100.0)
    for bad in (np.nan, np.inf):
        v = np.ones(20)
        v[4] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            sparc(v, 100.0)
        with pytest.raises(ValueError, match="NaN or inf"):
            ldlj(v, 100.0)
    with pytest.raises(ValueError, match="fs"):
        sparc(np.ones(20), 0.0)
    with pytest.raises(ValueError, match="fc"):
        sparc(np.ones(20), 15.0)
    short = motion_quality(np.zeros((2, 3)), 100.0)
    assert math.isnan(short.sparc) and short.path_length_mm == 0.0


def test_resample_matches_reference_with_jitter_and_gaps() -> None:
    fs = 90.0
    t = np.cumsum(RNG.uniform(0.7, 1.3, 300) / fs)
    x = np.stack([np.sin(t), t ** 2], axis=1)
    valid = RNG.random(300) > 0.15
    valid[100:115] = False  # a long gap (> 0.1 s)
    grid, out, ok, rep = resample(t, x, valid, fs, max_gap_s=0.1)
    want, wok, wmeas = naive.resample(t, x, valid, fs, 0.1)
    np.testing.assert_array_equal(ok, wok)
    np.testing.assert_allclose(out[ok], want[wok], rtol=1e-12)
    assert rep.gaps >= 1 and rep.gap_fraction > 0
    assert rep.measured_fraction == pytest.approx(wmeas.mean())
    assert rep.interpolated_fraction == pytest.approx((wok & ~wmeas).mean())
    assert rep.measured_fraction + rep.interpolated_fraction + rep.gap_fraction == (
        pytest.approx(1.0))
    assert grid[1] - grid[0] == pytest.approx(1 / fs)
    with pytest.raises(ValueError, match="increasing"):
        resample(t[::-1], x, None, fs)
