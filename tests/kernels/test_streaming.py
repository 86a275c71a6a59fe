"""Streaming open-ended DTW equals batch open-ended DTW on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import naive

from sim_kernels.dtw import dtw_open_end
from sim_kernels.streaming import StreamingDTW

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("trial", range(40))
def test_stream_equals_batch_open_end(trial: int) -> None:
    m, n, d = int(RNG.integers(1, 50)), int(RNG.integers(1, 80)), int(RNG.integers(1, 6))
    w = None if trial % 4 == 0 else int(RNG.integers(1, 25))
    ref = RNG.normal(size=(m, d))
    x = RNG.normal(size=(n, d))
    s = StreamingDTW(ref, window=w)
    i = 0
    while i < n:
        k = int(RNG.integers(0, 9))
        dist, pos = s.update(x[i:i + k])
        i += k
        want = dtw_open_end(x[:min(i, n)], ref, window=w) if i > 0 else (math.inf, -1)
        assert pos == want[1]
        assert dist == pytest.approx(want[0], rel=1e-12) or dist == want[0] == math.inf
    assert s.samples == n
    ref_d, ref_j = naive.dtw_open_end(x, ref, w if w is not None else None)
    if w is None:
        assert s.position == ref_j
        assert s.distance == pytest.approx(ref_d, rel=1e-12)


def test_progress_and_reset() -> None:
    ref = np.linspace(0, 1, 101)[:, None]
    s = StreamingDTW(ref, window=None)
    assert s.progress == 0.0 and s.position == -1
    s.update(np.linspace(0, 0.5, 30)[:, None])
    assert s.progress == pytest.approx(0.5, abs=0.011)
    s.reset()
    assert s.samples == 0 and s.distance == math.inf
    s.update(np.array([[1.0]]))
    assert s.position == 0  # the path starts at (0, 0): one sample cannot jump ahead
    s.reset()
    s.update(np.linspace(0, 1, 101)[:, None])
    assert s.position == 100 and s.progress == 1.0


def test_rejects_bad_chunks() -> None:
    s = StreamingDTW(RNG.normal(size=(10, 2)), window=3)
    with pytest.raises(ValueError, match="shape"):
        s.update(RNG.normal(size=(4, 3)))
    bad = RNG.normal(size=(4, 2))
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        s.update(bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        StreamingDTW(np.array([[np.inf]]))
    assert s.samples == 0  # a rejected chunk leaves the state alone


def test_band_leaving_the_reference_gives_inf() -> None:
    s = StreamingDTW(np.zeros((5, 1)), window=2)
    dist, pos = s.update(np.zeros((7, 1)))
    assert dist == math.inf and pos == -1
    assert dtw_open_end(np.zeros((7, 1)), np.zeros((5, 1)), window=2) == (math.inf, -1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 40), st.integers(1, 12) | st.none(),
       st.lists(st.integers(1, 7), min_size=1, max_size=12))
def test_chunking_never_matters(m: int, n: int, w: int | None, sizes: list[int]) -> None:
    rng = np.random.default_rng(m * 1000 + n)
    ref = rng.normal(size=(m, 2))
    x = rng.normal(size=(n, 2))
    a = StreamingDTW(ref, window=w)
    a.update(x)
    b = StreamingDTW(ref, window=w)
    i = 0
    k = 0
    while i < n:
        step = sizes[k % len(sizes)]
        b.update(x[i:i + step])
        i += step
        k += 1
    assert (a.distance, a.position) == (b.distance, b.position)
