"""Dynamic time warping between a trainee trace and the expert reference.

Distance definition (the same as ``dtaidistance`` 2.x ``distance_fast`` / ``dtw_ndim``):
local cost of cells ``(i, j)`` is the squared Euclidean distance over the ``d`` channels,
``c(i, j) = sum_k (x[i, k] - y[j, k])**2``; the accumulated cost is
``D(i, j) = c(i, j) + min(D(i-1, j-1), D(i-1, j), D(i, j-1))`` with ``D(-1, -1) = 0``; the
returned distance is ``sqrt(D(n-1, m-1))`` (the square root of the accumulated squared cost,
not a sum of Euclidean distances).

Sakoe–Chiba band (dtaidistance ``window`` semantics): with ``a = max(0, n - m)`` and
``b = max(0, m - n)``, cell ``(i, j)`` is allowed iff ``i - a - (w - 1) <= j <= i + b + (w - 1)``.
``window=1`` keeps only the diagonal (widened by the length difference, so a band narrower than
the length difference still has a path); ``window=None`` means no band. The open-ended
variant (the trainee is part-way through the reference) has no length-difference widening
because the trainee's final length is unknown: ``|i - j| <= w - 1``.

Early abandoning: with ``max_dist`` the result is ``inf`` as soon as every cell of a row
exceeds ``max_dist**2`` (any path crosses every row), otherwise the exact distance; LB_Keogh
(the same envelope band) skips references in batch search.

Speed, all exact: rows are computed in skewed strips of four (cell ``(i+q, t-q)`` at step
``t``) so four independent min/add chains overlap in the core, with the channel loop run on
the four cells of an anti-diagonal at once; closed DTW also prunes (PrunedDTW, Silva & Batista
2016) with the cost of the diagonal path as the bound, which pays most on similar series.

Tiers: private single-thread kernels (``_dtw_core``), parallel driver (``_dtw_batch_par``),
public wrappers that validate (``dtw_distance``, ``dtw_open_end``, ``dtw_path``, ``lb_keogh``,
``dtw_batch``).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numpy.typing import NDArray

from sim_kernels._config import jit, pjit
from sim_kernels._validate import as_series, check_window

_INF = np.inf
#: Steps per cost block in the ragged strip ends (a strip end is ~6 steps per side).
_MASK_BLOCK = 8


@jit
def _band(n: int, m: int, w: int, open_end: bool) -> tuple[int, int]:
    """Return ``(a + w - 1, b + w - 1)``: how far below / above the diagonal a row reaches."""
    if open_end:
        return w - 1, w - 1
    return max(0, n - m) + w - 1, max(0, m - n) + w - 1


@jit
def _rows(x: NDArray[np.float64], y: NDArray[np.float64], buf: NDArray[np.float64],
          i_start: int, i_stop: int, below: int, above: int, ub: float,
          st: NDArray[np.int64]) -> bool:
    """Advance ``buf`` one row at a time over rows ``[i_start, i_stop)``.

    State ``st = (sc, pe)`` of the previous row: ``buf[j + 1] = D(i - 1, j)`` is meaningful
    only for ``sc <= j <= pe`` (its first live and last written column; row -1 is just
    ``D(-1, -1) = 0`` at column -1). Cells above ``ub`` are dead (set to inf): no path under
    the bound uses them (PrunedDTW, Silva & Batista 2016), so a row starts at the previous
    row's first live column and stops at its first dead cell past the previous row's end.
    Returns False when a whole row is dead (true cost > ub)."""
    m = y.shape[0]
    d = x.shape[1]
    sc = st[0]
    pe = st[1]
    for i in range(i_start, i_stop):
        lo = max(max(0, i - below), sc)
        hi = min(m - 1, i + above)
        diag = buf[lo] if sc <= lo - 1 <= pe else _INF
        left = _INF
        nsc = -1
        last = lo - 1
        for j in range(lo, hi + 1):
            c = 0.0
            for k in range(d):
                t = x[i, k] - y[j, k]
                c += t * t
            up = buf[j + 1] if j <= pe else _INF
            v = c + min(diag, up, left)
            if v > ub:
                v = _INF
            diag = up
            buf[j + 1] = v
            left = v
            last = j
            if v < _INF:
                if nsc < 0:
                    nsc = j
            elif j > pe:
                break  # dead, and nothing above feeds this row any more
        if nsc < 0:
            return False
        sc = nsc
        pe = last
    st[0] = sc
    st[1] = pe
    return True


@jit
def _strip_masked(xl: NDArray[np.float64], ytp: NDArray[np.float64],
                  buf: NDArray[np.float64], t_start: int, t_stop: int, lo0: int, lo1: int,
                  lo2: int, lo3: int, hi0: int, hi1: int, hi2: int, hi3: int, sc: int, pe: int,
                  ub: float, st: NDArray[np.float64], cs: NDArray[np.float64]) -> int:
    """Strip steps ``t`` in ``[t_start, t_stop)`` with band masks, index clamps and the
    previous row's live range ``[sc, pe]`` (the ragged ends of a strip). ``st`` carries
    (last0..last3, prev0..prev2, first live column of row 3) between phases. Returns the step
    after the last one done: it stops early once two consecutive steps are all dead past
    ``pe`` (nothing can come alive again in these rows). Costs come from the lane layout of
    :func:`_strip_inner_lanes`; the 3 zero columns padding ``ytp`` absorb the out-of-range
    columns of the ragged ends (their cells are masked anyway). ``cs`` (4, _MASK_BLOCK) is
    the caller's cost scratch."""
    d = xl.shape[0]
    last0, last1, last2, last3 = st[0], st[1], st[2], st[3]
    prev0, prev1, prev2 = st[4], st[5], st[6]
    first3 = int(st[7])
    dead_run = 0
    t = t_start
    blk_end = t_start  # costs are summed for blocks of steps (as in _strip_inner_lanes)
    while t < t_stop:
        if t == blk_end:
            nb = min(_MASK_BLOCK, t_stop - t)
            for p in range(4):
                cp = cs[p]
                for tt in range(nb):
                    cp[tt] = 0.0
                for k in range(d):
                    xv = xl[k, p]
                    yk = ytp[k, t + p:t + p + nb]
                    for tt in range(nb):
                        u = xv - yk[tt]
                        cp[tt] += u * u
            blk_end = t + nb
        q = t - blk_end + nb  # position inside the current cost block
        j0 = t
        up0 = buf[j0 + 1] if sc <= j0 <= pe else _INF
        dg0 = buf[j0] if sc <= j0 - 1 <= pe else _INF
        j1 = t - 1
        j2 = t - 2
        j3 = t - 3
        v0 = cs[3, q] + min(dg0, up0, last0)
        v1 = cs[2, q] + min(prev0, last0, last1)
        v2 = cs[1, q] + min(prev1, last1, last2)
        v3 = cs[0, q] + min(prev2, last2, last3)
        if j0 < lo0 or j0 > hi0 or v0 > ub:
            v0 = _INF
        if j1 < lo1 or j1 > hi1 or v1 > ub:
            v1 = _INF
        if j2 < lo2 or j2 > hi2 or v2 > ub:
            v2 = _INF
        if j3 < lo3 or j3 > hi3 or v3 > ub:
            v3 = _INF
        prev0 = last0
        prev1 = last1
        prev2 = last2
        last0 = v0
        last1 = v1
        last2 = v2
        last3 = v3
        if j3 >= -1:
            buf[j3 + 1] = v3
        if first3 < -1 and v3 < _INF:
            first3 = j3
        t += 1
        if v0 == _INF and v1 == _INF and v2 == _INF and v3 == _INF and j0 - 1 > pe:
            dead_run += 1
            if dead_run >= 2:
                break
        else:
            dead_run = 0
    st[0], st[1], st[2], st[3] = last0, last1, last2, last3
    st[4], st[5], st[6], st[7] = prev0, prev1, prev2, first3
    return t


@jit
def _strip_inner_1(x: NDArray[np.float64], y: NDArray[np.float64], buf: NDArray[np.float64],
                   i: int, t_start: int, t_stop: int, ub: float,
                   st: NDArray[np.float64]) -> None:
    """Strip steps where all four cells are inside the band and row 0 reads only live-range
    columns of the previous row; one channel: no masks, no clamps."""
    last0, last1, last2, last3 = st[0], st[1], st[2], st[3]
    prev0, prev1, prev2 = st[4], st[5], st[6]
    first3 = int(st[7])
    x0 = x[i, 0]
    x1 = x[i + 1, 0]
    x2 = x[i + 2, 0]
    x3 = x[i + 3, 0]
    dg0 = buf[t_start]
    for t in range(t_start, t_stop):
        up0 = buf[t + 1]
        t0 = x0 - y[t, 0]
        t1 = x1 - y[t - 1, 0]
        t2 = x2 - y[t - 2, 0]
        t3 = x3 - y[t - 3, 0]
        v0 = t0 * t0 + min(dg0, up0, last0)
        v1 = t1 * t1 + min(prev0, last0, last1)
        v2 = t2 * t2 + min(prev1, last1, last2)
        v3 = t3 * t3 + min(prev2, last2, last3)
        v0 = v0 if v0 <= ub else _INF
        v1 = v1 if v1 <= ub else _INF
        v2 = v2 if v2 <= ub else _INF
        v3 = v3 if v3 <= ub else _INF
        dg0 = up0
        prev0 = last0
        prev1 = last1
        prev2 = last2
        last0 = v0
        last1 = v1
        last2 = v2
        last3 = v3
        buf[t - 2] = v3
        if first3 < -1 and v3 < _INF:
            first3 = t - 3
    st[0], st[1], st[2], st[3] = last0, last1, last2, last3
    st[4], st[5], st[6], st[7] = prev0, prev1, prev2, first3


@jit
def _strip_inner_lanes(xl: NDArray[np.float64], ytp: NDArray[np.float64],
                       buf: NDArray[np.float64], t_start: int, t_stop: int,
                       ub: float, st: NDArray[np.float64]) -> None:
    """Like ``_strip_inner_1`` for d > 1. The 4 cells of a step sit on an anti-diagonal:
    lane ``p`` = row ``i+3-p`` needs ``y[t-3+p]``, i.e. ``ytp[k, t + p]`` in the transposed,
    3-padded ``ytp`` (``ytp[k, j + 3] = y[j, k]``; ``xl[k, p] = x[i + 3 - p, k]``). The local
    costs of the whole span are summed first, lane by lane over contiguous columns of a fresh
    buffer through zero-based views (so LLVM can drop numba's negative-index wraparound and
    vectorise); then the skewed min/add pass reads them. ~2-3x over a per-cell channel loop
    at d = 7."""
    d = xl.shape[0]
    n = t_stop - t_start
    if n <= 0:
        return
    cs = np.zeros((4, n))
    for p in range(4):
        cp = cs[p]
        for k in range(d):
            xv = xl[k, p]
            yk = ytp[k, t_start + p:t_start + p + n]
            for tt in range(n):
                u = xv - yk[tt]
                cp[tt] += u * u
    c0 = cs[3]
    c1 = cs[2]
    c2 = cs[1]
    c3 = cs[0]
    last0, last1, last2, last3 = st[0], st[1], st[2], st[3]
    prev0, prev1, prev2 = st[4], st[5], st[6]
    first3 = int(st[7])
    bu = buf[t_start + 1:t_stop + 1]
    bw = buf[t_start - 2:t_stop - 2]
    dg0 = buf[t_start]
    for tt in range(n):
        up0 = bu[tt]
        v0 = c0[tt] + min(dg0, up0, last0)
        v1 = c1[tt] + min(prev0, last0, last1)
        v2 = c2[tt] + min(prev1, last1, last2)
        v3 = c3[tt] + min(prev2, last2, last3)
        v0 = v0 if v0 <= ub else _INF
        v1 = v1 if v1 <= ub else _INF
        v2 = v2 if v2 <= ub else _INF
        v3 = v3 if v3 <= ub else _INF
        dg0 = up0
        prev0 = last0
        prev1 = last1
        prev2 = last2
        last0 = v0
        last1 = v1
        last2 = v2
        last3 = v3
        bw[tt] = v3
        if first3 < -1 and v3 < _INF:
            first3 = t_start + tt - 3
    st[0], st[1], st[2], st[3] = last0, last1, last2, last3
    st[4], st[5], st[6], st[7] = prev0, prev1, prev2, first3


@jit
def _dtw_strips(x: NDArray[np.float64], y: NDArray[np.float64], buf: NDArray[np.float64],
                below: int, above: int, ub: float, rs: NDArray[np.int64]) -> int:
    """Advance ``buf`` over whole strips of 4 rows, skewed so the 4 rows' dependency chains
    run interleaved (cell ``(i+q, t-q)`` at step ``t``): the min/add chain of one row no
    longer stalls the core. ``rs = (sc, pe)`` as in :func:`_rows`; all 4 rows start at the
    previous row's first live column and a strip ends once it is dead past ``pe``. Returns
    the rows done, or -1 when a strip's last row is all dead (true cost > ub)."""
    n = x.shape[0]
    m = y.shape[0]
    d = x.shape[1]
    nstrips = n // 4
    st = np.empty(8)
    ytp = np.zeros((d, m + 6) if nstrips > 0 else (d, 1))
    if nstrips > 0:
        for j in range(m):
            for k in range(d):
                ytp[k, j + 3] = y[j, k]
    xl = np.empty((d, 4))
    mcs = np.empty((4, _MASK_BLOCK))
    sc = rs[0]
    pe = rs[1]
    for s in range(nstrips):
        i = 4 * s
        lo0 = max(max(0, i - below), sc)
        lo1 = max(max(0, i + 1 - below), sc)
        lo2 = max(max(0, i + 2 - below), sc)
        lo3 = max(max(0, i + 3 - below), sc)
        hi0 = min(m - 1, i + above)
        hi1 = min(m - 1, i + 1 + above)
        hi2 = min(m - 1, i + 2 + above)
        hi3 = min(m - 1, i + 3 + above)
        for q in range(7):
            st[q] = _INF
        st[7] = -2.0  # first live column of row 3: none yet
        t_end = hi3 + 4
        # steps where every row is inside its band and row 0 reads only [sc, pe]
        a = max(max(lo0, lo3 + 3), sc + 1)
        b = max(a, min(hi0, pe) + 1)
        for k in range(d):
            for p in range(4):
                xl[k, p] = x[i + 3 - p, k]
        t = _strip_masked(xl, ytp, buf, lo0, a, lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, sc, pe,
                          ub, st, mcs)
        if t == a:  # else the strip died early: everything right of t is dead
            if d == 1:
                _strip_inner_1(x, y, buf, i, a, b, ub, st)
            else:
                _strip_inner_lanes(xl, ytp, buf, a, b, ub, st)
            t = _strip_masked(xl, ytp, buf, b, t_end, lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3,
                              sc, pe, ub, st, mcs)
        first3 = int(st[7])
        if first3 < -1:
            return -1
        sc = first3
        pe = t - 4  # row 3 wrote columns up to (last step) - 3
    rs[0] = sc
    rs[1] = pe
    return int(4 * nstrips)


@jit
def _ub_path(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Cost of one valid path: the diagonal, then along the last row/column. An upper bound
    of the DTW cost inside any closed band (the band always holds this path)."""
    n = x.shape[0]
    m = y.shape[0]
    d = x.shape[1]
    s = 0.0
    k = min(n, m)
    for i in range(k):
        c = 0.0
        for q in range(d):
            t = x[i, q] - y[i, q]
            c += t * t
        s = c + s
    for i in range(k, n):
        c = 0.0
        for q in range(d):
            t = x[i, q] - y[m - 1, q]
            c += t * t
        s = c + s
    for j in range(k, m):
        c = 0.0
        for q in range(d):
            t = x[n - 1, q] - y[j, q]
            c += t * t
        s = c + s
    return s


@jit
def _dtw_core(x: NDArray[np.float64], y: NDArray[np.float64], w: int, open_end: bool,
              thr: float, buf: NDArray[np.float64]) -> tuple[float, int]:
    """Accumulated squared cost (not yet square-rooted) and, for open end, the best column.

    ``buf`` is scratch of length ``m + 1`` (reused by batch drivers). Returns ``(inf, -1)``
    when abandoned by ``thr``. Closed DTW prunes with the diagonal path's cost as the bound
    (exact: the optimum is never above it).
    """
    n = x.shape[0]
    m = y.shape[0]
    below, above = _band(n, m, w, open_end)
    ub = thr
    if not open_end:
        # margin: the bound path summed in another order may round a few ulps lower
        ub = min(thr, _ub_path(x, y) * (1.0 + 1e-9))
    buf[0] = 0.0
    rs = np.empty(2, np.int64)
    rs[0] = -1  # row -1: only D(-1, -1) = 0, stored at column -1 (buf[0])
    rs[1] = -1
    done = _dtw_strips(x, y, buf, below, above, ub, rs)
    if done < 0:
        return _INF, -1
    if not _rows(x, y, buf, done, n, below, above, ub, rs):
        return _INF, -1
    sc = rs[0]
    pe = rs[1]
    if not open_end:
        if pe < m - 1:
            return _INF, -1
        v = float(buf[m])
        if v > thr:
            return _INF, -1
        return v, m - 1
    lo = max(max(0, n - 1 - below), sc)
    hi = min(min(m - 1, n - 1 + above), pe)
    best = _INF
    arg = -1
    for j in range(lo, hi + 1):
        if buf[j + 1] < best:
            best = buf[j + 1]
            arg = j
    if best > thr:
        return _INF, -1
    return best, arg


@jit
def _dtw_single(x: NDArray[np.float64], y: NDArray[np.float64], w: int, open_end: bool,
                thr: float) -> tuple[float, int]:
    buf = np.empty(y.shape[0] + 1)
    return _dtw_core(x, y, w, open_end, thr, buf)


@jit
def _dtw_matrix(x: NDArray[np.float64], y: NDArray[np.float64], w: int,
                open_end: bool) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Banded accumulated-cost matrix: row ``i`` holds columns ``lo[i] ..`` (for paths)."""
    n = x.shape[0]
    m = y.shape[0]
    d = x.shape[1]
    below, above = _band(n, m, w, open_end)
    width = min(m, below + above + 1)
    acc = np.full((n, width), _INF)
    los = np.empty(n, np.int64)
    for i in range(n):
        lo = max(0, i - below)
        hi = min(m - 1, i + above)
        los[i] = lo
        for j in range(lo, hi + 1):
            c = 0.0
            for k in range(d):
                t = x[i, k] - y[j, k]
                c += t * t
            if i == 0 and j == 0:
                best = 0.0
            else:
                best = _INF
                if i > 0:
                    plo = los[i - 1]
                    if plo <= j - 1 < plo + width:
                        best = min(best, acc[i - 1, j - 1 - plo])
                    if plo <= j < plo + width:
                        best = min(best, acc[i - 1, j - plo])
                if j > lo:
                    best = min(best, acc[i, j - 1 - lo])
            acc[i, j - lo] = c + best
    return acc, los


@jit
def _traceback(acc: NDArray[np.float64], los: NDArray[np.int64], j_end: int) -> NDArray[np.int64]:
    """Warping path from ``(0, 0)`` to ``(n - 1, j_end)``; ties prefer the diagonal."""
    n = acc.shape[0]
    width = acc.shape[1]
    path = np.empty((n + j_end + 1, 2), np.int64)
    i = n - 1
    j = j_end
    p = 0
    path[p, 0] = i
    path[p, 1] = j
    p += 1
    while i > 0 or j > 0:
        best = _INF
        bi = -1
        bj = -1
        if i > 0 and j > 0:
            plo = los[i - 1]
            if plo <= j - 1 < plo + width and acc[i - 1, j - 1 - plo] < best:
                best = acc[i - 1, j - 1 - plo]
                bi = i - 1
                bj = j - 1
        if i > 0:
            plo = los[i - 1]
            if plo <= j < plo + width and acc[i - 1, j - plo] < best:
                best = acc[i - 1, j - plo]
                bi = i - 1
                bj = j
        if j > 0:
            lo = los[i]
            if lo <= j - 1 < lo + width and acc[i, j - 1 - lo] < best:
                best = acc[i, j - 1 - lo]
                bi = i
                bj = j - 1
        i = bi
        j = bj
        path[p, 0] = i
        path[p, 1] = j
        p += 1
    out = np.empty((p, 2), np.int64)
    for q in range(p):
        out[q, 0] = path[p - 1 - q, 0]
        out[q, 1] = path[p - 1 - q, 1]
    return out


@jit
def _envelope(y: NDArray[np.float64], n: int, below: int, above: int,
              lower: NDArray[np.float64], upper: NDArray[np.float64]) -> None:
    """Per row ``i`` of an ``n``-long query: min/max of ``y`` over the band columns."""
    m = y.shape[0]
    d = y.shape[1]
    for i in range(n):
        lo = max(0, i - below)
        hi = min(m - 1, i + above)
        for k in range(d):
            mn = y[lo, k]
            mx = y[lo, k]
            for j in range(lo + 1, hi + 1):
                v = y[j, k]
                mn = min(mn, v)
                mx = max(mx, v)
            lower[i, k] = mn
            upper[i, k] = mx


@jit
def _lb_keogh_env(x: NDArray[np.float64], lower: NDArray[np.float64],
                  upper: NDArray[np.float64]) -> float:
    """Squared LB_Keogh of ``x`` against a precomputed envelope."""
    s = 0.0
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            v = x[i, k]
            if v > upper[i, k]:
                t = v - upper[i, k]
                s += t * t
            elif v < lower[i, k]:
                t = lower[i, k] - v
                s += t * t
    return s


@jit
def _lb_keogh(x: NDArray[np.float64], y: NDArray[np.float64], w: int) -> float:
    n = x.shape[0]
    below, above = _band(n, y.shape[0], w, False)
    lower = np.empty((n, x.shape[1]))
    upper = np.empty((n, x.shape[1]))
    _envelope(y, n, below, above, lower, upper)
    return _lb_keogh_env(x, lower, upper)


@pjit
def _dtw_batch_par(x: NDArray[np.float64], refs: NDArray[np.float64],
                   lengths: NDArray[np.int64], w: int, thr: float, use_lb: bool,
                   nthreads: int, out: NDArray[np.float64]) -> None:
    """One query against many references; references split into one block per thread, each
    block with its own scratch row and envelope buffers (no shared writes but ``out[r]``)."""
    nref = refs.shape[0]
    mmax = refs.shape[1]
    n = x.shape[0]
    d = x.shape[1]
    nblocks = min(nref, nthreads * 4)
    for blk in nb.prange(nblocks):
        buf = np.empty(mmax + 1)
        lower = np.empty((n, d))
        upper = np.empty((n, d))
        for r in range(blk, nref, nblocks):
            y = refs[r][: lengths[r]]
            if use_lb:
                below, above = _band(n, y.shape[0], w, False)
                _envelope(y, n, below, above, lower, upper)
                if _lb_keogh_env(x, lower, upper) > thr:
                    out[r] = _INF
                    continue
            v, _ = _dtw_core(x, y, w, False, thr, buf)
            out[r] = np.sqrt(v)


def _thr(max_dist: float | None) -> float:
    if max_dist is None:
        return float(np.inf)
    if not (max_dist >= 0.0):
        raise ValueError(f"max_dist must be >= 0, got {max_dist!r}")
    return float(max_dist) ** 2


def dtw_distance(x: NDArray[np.floating], y: NDArray[np.floating], window: int | None = None,
                 max_dist: float | None = None) -> float:
    """DTW distance ``sqrt(sum of squared Euclidean costs)`` between ``x`` (n, d) or (n,)
    and ``y`` (m, d) or (m,); ``inf`` if ``max_dist`` is given and exceeded."""
    xs, ys = as_series(x, "x"), as_series(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x has {xs.shape[1]} channels, y has {ys.shape[1]}")
    w = check_window(window, xs.shape[0], ys.shape[0])
    v, _ = _dtw_single(xs, ys, w, False, _thr(max_dist))
    return float(np.sqrt(v))


def dtw_open_end(x: NDArray[np.floating], y: NDArray[np.floating],
                 window: int | None = None) -> tuple[float, int]:
    """Open-ended DTW: all of ``x`` (the trainee so far) against the best prefix of ``y``
    (the reference). Returns ``(distance, j)`` where ``y[j]`` is the matched reference
    position; band ``|i - j| <= window - 1`` (no length-difference widening)."""
    xs, ys = as_series(x, "x"), as_series(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x has {xs.shape[1]} channels, y has {ys.shape[1]}")
    w = check_window(window, xs.shape[0], ys.shape[0])
    if xs.shape[0] - 1 > ys.shape[0] - 1 + (w - 1):
        # the band holds no cell of the last row: no open-end alignment exists
        return float("inf"), -1
    v, j = _dtw_single(xs, ys, w, True, np.inf)
    return float(np.sqrt(v)), int(j)


def dtw_path(x: NDArray[np.floating], y: NDArray[np.floating], window: int | None = None,
             open_end: bool = False) -> tuple[float, NDArray[np.int64]]:
    """Distance and warping path (``(p, 2)`` array of ``(i, j)`` from ``(0, 0)``).

    Stores the banded cost matrix: memory ``n * min(m, band width) * 8`` bytes.
    """
    xs, ys = as_series(x, "x"), as_series(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x has {xs.shape[1]} channels, y has {ys.shape[1]}")
    w = check_window(window, xs.shape[0], ys.shape[0])
    acc, los = _dtw_matrix(xs, ys, w, open_end)
    n = xs.shape[0]
    row = acc[n - 1]
    if open_end:
        k = int(np.argmin(row))
        if not np.isfinite(row[k]):
            raise ValueError("no open-end alignment inside this window")
        j_end = int(los[n - 1]) + k
    else:
        j_end = ys.shape[0] - 1
    total = float(acc[n - 1, j_end - los[n - 1]])
    return float(np.sqrt(total)), _traceback(acc, los, j_end)


def lb_keogh(x: NDArray[np.floating], y: NDArray[np.floating],
             window: int | None = None) -> float:
    """LB_Keogh lower bound of ``dtw_distance(x, y, window)`` (envelope of ``y`` over the
    band of each row of ``x``; squared exceedances summed over channels, square-rooted)."""
    xs, ys = as_series(x, "x"), as_series(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x has {xs.shape[1]} channels, y has {ys.shape[1]}")
    w = check_window(window, xs.shape[0], ys.shape[0])
    return float(np.sqrt(_lb_keogh(xs, ys, w)))


def dtw_batch(x: NDArray[np.floating], refs: NDArray[np.floating],
              lengths: NDArray[np.integer] | None = None, window: int | None = None,
              max_dist: float | None = None, use_lb: bool = True) -> NDArray[np.float64]:
    """DTW distance of one query ``x`` (n, d) or (n,) to every reference in ``refs``
    (N, m, d) or (N, m), in parallel. ``lengths`` gives each reference's true length when
    they are padded to ``m``. With ``max_dist``, references beyond it (LB_Keogh first, then
    early abandoning) are ``inf``. ``window`` is resolved against the longest reference."""
    xs = as_series(x, "x")
    r = np.asarray(refs)
    if r.ndim == 2:
        r = r[:, :, None]
    if r.ndim != 3 or r.shape[0] == 0 or r.shape[1] == 0:
        raise ValueError(f"refs must have shape (N, m, d) or (N, m), got {np.shape(refs)}")
    if r.shape[2] != xs.shape[1]:
        raise ValueError(f"x has {xs.shape[1]} channels, refs have {r.shape[2]}")
    if not np.issubdtype(r.dtype, np.floating) and not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"refs must be numeric, got dtype {r.dtype}")
    r = np.ascontiguousarray(r, dtype=np.float64)
    if lengths is None:
        lens = np.full(r.shape[0], r.shape[1], np.int64)
    else:
        lens = np.asarray(lengths, dtype=np.int64)
        if lens.shape != (r.shape[0],) or lens.min() < 1 or lens.max() > r.shape[1]:
            raise ValueError("lengths must be one value in 1..m per reference")
    for q in range(r.shape[0]):
        if not np.isfinite(r[q, : lens[q]]).all():
            raise ValueError(f"refs[{q}] contains NaN or inf")
    w = check_window(window, xs.shape[0], r.shape[1])
    out = np.empty(r.shape[0])
    thr = _thr(max_dist)
    _dtw_batch_par(xs, r, lens, w, thr, bool(use_lb and max_dist is not None),
                   nb.get_num_threads(), out)
    return out
