"""DTW kernels against the naive full-matrix reference and against dtaidistance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dtaidistance import dtw as dd
from dtaidistance import dtw_ndim as dd_nd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import naive

from sim_kernels.dtw import dtw_batch, dtw_distance, dtw_open_end, dtw_path, lb_keogh

RNG = np.random.default_rng(20261128)


def _dd(x: np.ndarray, y: np.ndarray, w: int | None) -> float:
    """dtaidistance (C, no pruning: its pruning may return +inf for a finite distance)."""
    if x.shape[1] == 1:
        return float(dd.distance_fast(x[:, 0].copy(), y[:, 0].copy(), window=w,
                                      use_pruning=False))
    return float(dd_nd.distance_fast(x, y, window=w, use_pruning=False))


def _cases(count: int) -> list[tuple[np.ndarray, np.ndarray, int | None]]:
    out = []
    for _ in range(count):
        n, m = int(RNG.integers(1, 40)), int(RNG.integers(1, 40))
        d = int(RNG.choice([1, 2, 3, 7, 16]))
        w = None if RNG.random() < 0.25 else int(RNG.integers(1, 15))
        out.append((RNG.normal(size=(n, d)), RNG.normal(size=(m, d)), w))
    return out


@pytest.mark.parametrize(("x", "y", "w"), _cases(60))
def test_distance_matches_reference_and_dtaidistance(x: np.ndarray, y: np.ndarray,
                                                     w: int | None) -> None:
    got = dtw_distance(x, y, window=w)
    assert got == pytest.approx(naive.dtw(x, y, w), rel=1e-12)
    assert got == pytest.approx(_dd(x, y, w), rel=1e-9)


@pytest.mark.parametrize("d", [1, 3, 7])
def test_long_series_match_dtaidistance(d: int) -> None:
    x = np.cumsum(RNG.normal(size=(300, d)), axis=0)
    y = np.cumsum(RNG.normal(size=(257, d)), axis=0)
    for w in (None, 30, 1):
        assert dtw_distance(x, y, window=w) == pytest.approx(_dd(x, y, w), rel=1e-9)


def test_edges() -> None:
    one = np.array([[2.0]])
    assert dtw_distance(one, one) == 0.0
    assert dtw_distance(one, np.array([[1.0], [3.0]])) == pytest.approx(math.sqrt(2.0))
    # band narrower than the length difference still has a path (widened by |n - m|)
    x, y = RNG.normal(size=(5, 2)), RNG.normal(size=(20, 2))
    assert dtw_distance(x, y, window=1) == pytest.approx(naive.dtw(x, y, 1), rel=1e-12)
    assert dtw_distance(x, y, window=1) == pytest.approx(_dd(x, y, 1), rel=1e-9)
    # constant signals: distance is the plain offset over the longer series
    c = np.full((30, 3), 1.5)
    assert dtw_distance(c, c + 1.0) == pytest.approx(math.sqrt(30 * 3))
    assert dtw_distance(c, c) == 0.0
    # 1-D input is one channel
    assert dtw_distance(np.arange(5.0), np.arange(6.0)) == pytest.approx(
        dtw_distance(np.arange(5.0)[:, None], np.arange(6.0)[:, None]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(bad: float) -> None:
    x = RNG.normal(size=(10, 2))
    y = x.copy()
    y[3, 1] = bad
    for fn in (dtw_distance, dtw_open_end, dtw_path, lb_keogh):
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(x, y)
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(y, x)
    with pytest.raises(ValueError, match="NaN or inf"):
        dtw_batch(x, np.stack([x, y]))


def test_bad_shapes_and_windows() -> None:
    x = RNG.normal(size=(10, 2))
    with pytest.raises(ValueError, match="channels"):
        dtw_distance(x, RNG.normal(size=(10, 3)))
    with pytest.raises(ValueError, match=r"1\.\.16"):
        dtw_distance(RNG.normal(size=(4, 17)), RNG.normal(size=(4, 17)))
    with pytest.raises(ValueError, match="empty"):
        dtw_distance(np.empty((0, 2)), x)
    with pytest.raises(ValueError, match="window"):
        dtw_distance(x, x, window=0)
    with pytest.raises(ValueError, match="real numeric"):
        dtw_distance(x.astype(complex), x)
    with pytest.raises(ValueError, match="max_dist"):
        dtw_distance(x, x, max_dist=-1.0)


def test_early_abandoning_is_exact_or_inf() -> None:
    for x, y, w in _cases(40):
        exact = naive.dtw(x, y, w)
        for cut in (0.5 * exact, exact * (1 + 1e-9), 2 * exact + 1e-12):
            got = dtw_distance(x, y, window=w, max_dist=cut)
            if exact <= cut:
                assert got == pytest.approx(exact, rel=1e-12)
            else:
                assert got == math.inf


def test_open_end_matches_reference() -> None:
    for x, y, w in _cases(60):
        got = dtw_open_end(x, y, window=w)
        want = naive.dtw_open_end(x, y, w)
        assert got[1] == want[1]
        assert got[0] == pytest.approx(want[0], rel=1e-12) or got[0] == want[0] == math.inf


def test_path_is_optimal_and_valid() -> None:
    for x, y, w in _cases(40):
        dist, path = dtw_path(x, y, window=w)
        assert dist == pytest.approx(naive.dtw(x, y, w), rel=1e-12)
        assert tuple(path[-1]) == (len(x) - 1, len(y) - 1)
        assert math.sqrt(naive.path_cost(x, y, path)) == pytest.approx(dist, rel=1e-12)
        for i, j in path:
            assert naive.in_band(int(i), int(j), len(x), len(y), w)
        if np.isfinite(naive.dtw_open_end(x, y, w)[0]):
            od, opath = dtw_path(x, y, window=w, open_end=True)
            assert od == pytest.approx(naive.dtw_open_end(x, y, w)[0], rel=1e-12)
            assert math.sqrt(naive.path_cost(x, y, opath)) == pytest.approx(od, rel=1e-12)
        else:
            with pytest.raises(ValueError, match="no open-end alignment"):
                dtw_path(x, y, window=w, open_end=True)


def test_lb_keogh_matches_reference_and_dtaidistance_and_bounds() -> None:
    for x, y, w in _cases(60):
        lb = lb_keogh(x, y, window=w)
        assert lb == pytest.approx(naive.lb_keogh(x, y, w), rel=1e-12, abs=1e-12)
        assert lb <= dtw_distance(x, y, window=w) * (1 + 1e-12)
        if x.shape[1] == 1:
            ref = dd.lb_keogh(x[:, 0].copy(), y[:, 0].copy(), window=w)
            assert lb == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_batch_equals_single_and_prunes_exactly() -> None:
    x = RNG.normal(size=(40, 3))
    refs = RNG.normal(size=(64, 50, 3))
    lengths = RNG.integers(1, 51, size=64)
    got = dtw_batch(x, refs, lengths=lengths, window=8)
    want = [dtw_distance(x, r[:k], window=8) for r, k in zip(refs, lengths, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    cut = float(np.median(want))
    pruned = dtw_batch(x, refs, lengths=lengths, window=8, max_dist=cut)
    for g, wv in zip(pruned, want, strict=True):
        assert (g == pytest.approx(wv, rel=1e-12)) if wv <= cut else g == math.inf
    with pytest.raises(ValueError, match="lengths"):
        dtw_batch(x, refs, lengths=np.zeros(64, int))


series = arrays(np.float64, st.tuples(st.integers(1, 25), st.integers(1, 3)),
                elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(series, st.integers(1, 25), st.integers(1, 30) | st.none())
def test_properties(x: np.ndarray, m: int, w: int | None) -> None:
    rng = np.random.default_rng(m)
    y = rng.normal(scale=50, size=(m, x.shape[1]))
    d = dtw_distance(x, y, window=w)
    assert d >= 0.0
    assert d == pytest.approx(dtw_distance(y, x, window=w), rel=1e-12, abs=1e-9)  # symmetric
    assert dtw_distance(x, x, window=w) == 0.0
    assert lb_keogh(x, y, window=w) <= d * (1 + 1e-12) + 1e-9
    assert d == pytest.approx(naive.dtw(x, y, w), rel=1e-12, abs=1e-9)
    # a wider band can only lower the distance
    assert dtw_distance(x, y) <= d * (1 + 1e-12) + 1e-9
