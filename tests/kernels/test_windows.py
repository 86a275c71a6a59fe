"""Windowed statistics and cue state machines against the naive references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import naive

from sim_kernels.windows import CueTracker, stats, window_stats

RNG = np.random.default_rng(3)


def _obs(n: int, p: int) -> np.ndarray:
    o = RNG.normal(size=(n, p))
    o[RNG.random((n, p)) < 0.1] = np.nan  # no observation
    o[RNG.random((n, p)) < 0.03] = np.inf  # undefined measurement
    return o


def test_stats_match_reference() -> None:
    for n in (1, 2, 7, 60):
        o = _obs(n, 4)
        lo, hi = np.full(4, -0.5), np.full(4, 0.8)
        np.testing.assert_allclose(stats(o, lo, hi), naive.stats(o, lo, hi), rtol=1e-12,
                                   equal_nan=True)


def test_window_stats_match_reference() -> None:
    o = _obs(125, 3)
    lo, hi = np.array([-1.0, 0.0, -0.2]), np.array([1.0, 2.0, 0.2])
    got = window_stats(o, lo, hi, 12)
    assert got.shape == (10, 3, 5)  # complete windows only
    for w in range(10):
        np.testing.assert_allclose(got[w], naive.stats(o[12 * w:12 * w + 12], lo, hi),
                                   rtol=1e-12, equal_nan=True)
    empty = window_stats(np.full((12, 3), np.nan), lo, hi, 12)[0]
    assert (empty[:, 0] == 0).all() and np.isnan(empty[:, 2]).all()
    const = window_stats(np.full((6, 3), 0.1), lo, hi, 6)[0]
    assert (const[:, 3] < 1e-12).all()  # constant signal: std 0 up to rounding
    with pytest.raises(ValueError, match="lo <= hi"):
        window_stats(o, hi, lo, 12)
    with pytest.raises(ValueError, match="float"):
        window_stats(np.ones((4, 3), int), lo, hi, 2)


def _run_naive(o: np.ndarray, lo: np.ndarray, hi: np.ndarray, h: np.ndarray, dwell: int,
               clear: int) -> list[tuple[int, int, int, bool]]:
    cues = [naive.Cue(lo[j], hi[j], h[j], dwell, clear) for j in range(o.shape[1])]
    out = []
    for i in range(o.shape[0]):
        for j, c in enumerate(cues):
            e = c.step(o[i, j])
            if e:
                out.append((i, j, e[0], e[1]))
    return out


def test_cues_match_reference_and_chunking() -> None:
    t = np.arange(600)
    o = np.stack([np.sin(t / 25) * 1.5, np.cos(t / 40) * 1.2 + RNG.normal(0, 0.1, 600)], 1)
    o[RNG.random(o.shape) < 0.05] = np.nan
    lo, hi, h = np.array([-1.0, -1.0]), np.array([1.0, 1.0]), np.array([0.2, 0.1])
    want = _run_naive(o, lo, hi, h, 10, 5)
    whole = CueTracker(lo, hi, h, 10, 5).update(o)
    assert [(e.row, e.param, e.direction, e.active) for e in whole] == want
    tr = CueTracker(lo, hi, h, 10, 5)
    got = []
    for s in range(0, 600, 12):
        got += [(e.row + s, e.param, e.direction, e.active) for e in tr.update(o[s:s + 12])]
    assert got == want
    assert any(not a for *_, a in want) and any(a for *_, a in want)


def test_hysteresis_and_dwell() -> None:
    tr = CueTracker([0.0], [10.0], [1.0], dwell=3, clear=2)
    # brief excursions shorter than the dwell never fire
    assert tr.update(np.array([[11.0], [11.0], [5.0], [11.0], [5.0]])) == []
    ev = tr.update(np.array([[11.0], [12.0], [11.5]]))
    assert [(e.row, e.direction, e.active) for e in ev] == [(2, 1, True)]
    # hovering just inside the edge (within the margin) does not clear
    assert tr.update(np.array([[9.5]] * 10)) == []
    assert tr.active()[0] == 1
    ev = tr.update(np.array([[8.0], [8.5]]))
    assert [(e.row, e.direction, e.active) for e in ev] == [(1, 1, False)]
    # the other side fires with its own direction; NaN rows leave the state alone
    ev = tr.update(np.array([[-1.0], [np.nan], [-1.0], [-2.0]]))
    assert [(e.row, e.direction, e.active) for e in ev] == [(3, -1, True)]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.floats(0, 0.5), st.integers(0, 10_000))
def test_cue_property_alternates(dwell: int, clear: int, h: float, seed: int) -> None:
    """Per parameter, events alternate on/off (or switch side), never fire twice in a row
    for the same side, and match the reference."""
    rng = np.random.default_rng(seed)
    o = np.cumsum(rng.normal(0, 0.4, size=(300, 1)), axis=0)
    tr = CueTracker([-1.0], [1.0], [h], dwell, clear)
    ev = tr.update(o)
    want = _run_naive(o, np.array([-1.0]), np.array([1.0]), np.array([min(h, 0.98)]), dwell,
                      clear)
    assert [(e.row, e.param, e.direction, e.active) for e in ev] == want
    state = 0
    for e in ev:
        if e.active:
            assert e.direction != state
            state = e.direction
        else:
            assert e.direction == state
            state = 0
