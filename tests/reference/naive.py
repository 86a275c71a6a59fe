"""Slow, obviously correct reference implementations of every sim_kernels kernel.

Written straight from the definitions in the kernels' module docs with plain Python loops and
numpy, full matrices instead of bands, no tricks. Tests compare the kernels against these.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.typing import NDArray

F = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# DTW


def in_band(i: int, j: int, n: int, m: int, w: int | None, open_end: bool = False) -> bool:
    """dtaidistance's Sakoe–Chiba rule (no length widening for the open-ended variant)."""
    if w is None:
        return True
    a = 0 if open_end else max(0, n - m)
    b = 0 if open_end else max(0, m - n)
    return i - a - (w - 1) <= j <= i + b + (w - 1)


def dtw_matrix(x: F, y: F, w: int | None = None, open_end: bool = False) -> F:
    """Full accumulated-cost matrix ``D`` with ``D[i + 1, j + 1]`` for cell (i, j)."""
    x = np.asarray(x, float).reshape(len(x), -1)
    y = np.asarray(y, float).reshape(len(y), -1)
    n, m = len(x), len(y)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(n):
        for j in range(m):
            if in_band(i, j, n, m, w, open_end):
                cost = float(np.sum((x[i] - y[j]) ** 2))
                d[i + 1, j + 1] = cost + min(d[i, j], d[i, j + 1], d[i + 1, j])
    return d


def dtw(x: F, y: F, w: int | None = None) -> float:
    return math.sqrt(dtw_matrix(x, y, w)[-1, -1])


def dtw_open_end(x: F, y: F, w: int | None = None) -> tuple[float, int]:
    last = dtw_matrix(x, y, w, open_end=True)[-1, 1:]
    j = int(np.argmin(last))
    return (math.sqrt(last[j]), j) if np.isfinite(last[j]) else (math.inf, -1)


def path_cost(x: F, y: F, path: NDArray[np.int64]) -> float:
    """Sum of squared costs along a warping path (checks the path is a valid DTW path)."""
    x = np.asarray(x, float).reshape(len(x), -1)
    y = np.asarray(y, float).reshape(len(y), -1)
    assert tuple(path[0]) == (0, 0)
    for (i0, j0), (i1, j1) in itertools.pairwise(path):
        assert (i1 - i0, j1 - j0) in ((1, 0), (0, 1), (1, 1))
    return float(sum(np.sum((x[i] - y[j]) ** 2) for i, j in path))


def lb_keogh(x: F, y: F, w: int | None = None) -> float:
    x = np.asarray(x, float).reshape(len(x), -1)
    y = np.asarray(y, float).reshape(len(y), -1)
    n, m = len(x), len(y)
    total = 0.0
    for i in range(n):
        cols = [j for j in range(m) if in_band(i, j, n, m, w)]
        lo = y[cols].min(axis=0)
        hi = y[cols].max(axis=0)
        for k in range(x.shape[1]):
            if x[i, k] > hi[k]:
                total += (x[i, k] - hi[k]) ** 2
            elif x[i, k] < lo[k]:
                total += (lo[k] - x[i, k]) ** 2
    return math.sqrt(total)


# --------------------------------------------------------------------------------------------
# poses and process parameters


def rotate(q: F, v: F) -> F:
    """Rotate ``v`` by unit quaternion ``q = (x, y, z, w)`` as ``q v q*`` (Hamilton product)."""
    def mul(a: F, b: F) -> F:
        ax, ay, az, aw = a
        bx, by, bz, bw = b
        return np.array([aw * bx + ax * bw + ay * bz - az * by,
                         aw * by - ax * bz + ay * bw + az * bx,
                         aw * bz + ax * by - ay * bx + az * bw,
                         aw * bw - ax * bx - ay * by - az * bz])
    q = np.asarray(q, float) / np.linalg.norm(q)
    conj = np.array([-q[0], -q[1], -q[2], q[3]])
    return mul(mul(q, np.array([*v, 0.0])), conj)[:3]


def tool(pos: F, quat: F, offset: F) -> tuple[F, F]:
    tips = np.array([p + rotate(q, offset) for p, q in zip(pos, quat, strict=True)])
    axes = np.array([rotate(q, np.array([0.0, 0.0, 1.0])) for q in quat])
    return tips, axes


def weld_params(pos: F, quat: F, start: F, end: F, normal: F, second: F | None,
                offset: F) -> F:
    """(n, 5): work, travel, ctwd, aim, along by the definitions, via least squares."""
    tips, axes = tool(pos, quat, offset)
    u = (end - start) / np.linalg.norm(end - start)
    n = normal - (normal @ u) * u
    n /= np.linalg.norm(n)
    if second is None:
        b = np.cross(u, n)
    else:
        b = second - (second @ u) * u - (second @ n) * n
        b /= np.linalg.norm(b)
    out = []
    for t, a in zip(tips, axes, strict=True):
        h = -a
        work = math.degrees(math.atan2(h @ n, h @ b))
        travel = math.degrees(math.asin(np.clip(a @ u, -1, 1)))
        # closest approach of tip + lam a and start + mu u: least squares in (lam, mu)
        lam, mu = np.linalg.lstsq(np.stack([a, -u], axis=1), start - t, rcond=None)[0]
        e = np.cross(a, u)
        e /= np.linalg.norm(e)
        gap = (t + lam * a) - (start + mu * u)
        aim = float(gap @ e)
        out.append([work, travel, lam, aim, (t - start) @ u])
    return np.array(out)


def spray_params(pos: F, quat: F, point: F, normal: F, pass_dir: F, offset: F) -> F:
    tips, axes = tool(pos, quat, offset)
    cross = np.cross(normal, pass_dir)
    return np.array([[(t - point) @ normal,
                      math.degrees(math.asin(np.clip(-(a @ normal), -1, 1))),
                      (t - point) @ pass_dir, (t - point) @ cross]
                     for t, a in zip(tips, axes, strict=True)])


def lagged_speed(c: F, fs: float, lag: int) -> F:
    c = np.asarray(c, float)
    one = c.ndim == 1
    c = c.reshape(len(c), -1)
    v = np.zeros(len(c))
    for i in range(1, len(c)):
        L = min(lag, i)
        d = c[i] - c[i - L]
        v[i] = (d[0] if one else np.linalg.norm(d)) * fs / L
    if len(c) > 1:
        v[0] = v[1]
    return v


def weave(y: F, fs: float, min_amp: float) -> tuple[float, float]:
    y = np.asarray(y, float)
    if len(y) < 3:
        return 0.0, math.nan
    idx = np.arange(len(y), dtype=float)
    slope, icpt = np.polyfit(idx, y, 1)
    r = y - (slope * idx + icpt)
    amp = math.sqrt(2.0) * float(np.std(r))
    if amp < min_amp:
        return amp, math.nan
    h = amp / 4
    crossings = []
    state = 0
    for i, v in enumerate(r):
        s = 1 if v >= h else (-1 if v <= -h else 0)
        if s and s != state:
            if state:
                crossings.append(i)
            state = s
    if len(crossings) < 2:
        return amp, math.nan
    return amp, 2.0 * (crossings[-1] - crossings[0]) / fs / (len(crossings) - 1)


def passes(along: F, cross: F, fs: float, lag: int, vmin: float, lmin: float) -> list[
        tuple[int, int, float]]:
    n = len(along)

    def vel(i: int) -> float:
        if i == 0:
            return 0.0
        j = max(0, i - lag)
        return float((along[i] - along[j]) * fs / max(1, i - j))

    out = []
    i = 0
    while i < n:
        v = vel(i)
        sgn = 1 if v >= vmin else (-1 if v <= -vmin else 0)
        if not sgn:
            i += 1
            continue
        s = i
        while i < n and vel(i) * sgn >= vmin:
            i += 1
        if abs(along[i - 1] - along[s]) >= lmin:
            out.append((s, i, float(np.mean(cross[s:i]))))
    return out


# --------------------------------------------------------------------------------------------
# motion quality


def sparc(v: F, fs: float, pad: int = 4, fc: float = 10.0, th: float = 0.05) -> float:
    nfft = 2 ** (math.ceil(math.log2(len(v))) + pad)
    mag = np.abs(np.fft.fft(v, nfft))
    if mag.max() == 0:
        return math.nan
    mag = mag / mag.max()
    f = np.arange(nfft) * (fs / nfft)
    sel = np.flatnonzero(f <= fc)
    above = [k for k in sel if mag[k] >= th]
    ks = np.arange(above[0], above[-1] + 1)
    ff = f[ks]
    mm = mag[ks]
    return -float(np.sum(np.sqrt((np.diff(ff) / (ff[-1] - ff[0])) ** 2 + np.diff(mm) ** 2)))


def ldlj(vel: F, fs: float) -> float:
    vel = np.asarray(vel, float).reshape(len(vel), -1)
    dt = 1.0 / fs
    jerk = np.diff(vel, n=2, axis=0) / dt ** 2
    cost = float(np.sum(np.sum(jerk ** 2, axis=1)) * dt)
    dur = (len(vel) * dt) ** 3
    amp = float(np.max(np.sum(vel ** 2, axis=1)))
    return -math.log(dur * cost / amp)


def span(speed: F, rel: float, idle: float) -> tuple[int, int]:
    peak = float(np.max(speed))
    th = max(rel * peak, idle)
    idx = [i for i, v in enumerate(speed) if v >= th and peak > 0]
    return (idx[0], idx[-1] + 1) if idx else (0, 0)


def submovements(speed: F, prom: float) -> int:
    """Zig-zag: a peak counts once the signal rose >= prom from a trough and fell >= prom."""
    count = 0
    trough = math.inf
    peak = -math.inf
    rising = False
    for v in speed:
        if rising:
            peak = max(peak, v)
            if peak - v >= prom:
                count += 1
                rising = False
                trough = v
        else:
            trough = min(trough, v)
            if v - trough >= prom:
                rising = True
                peak = v
    return count


def smooth_speed(pos: F, fs: float, half: int) -> tuple[F, F]:
    n = len(pos)
    sm = np.array([pos[max(0, i - half):min(n, i + half + 1)].mean(axis=0) for i in range(n)])
    if n == 1:
        return sm, np.zeros(1)
    sp = []
    for i in range(n):
        a, b = max(0, i - 1), min(n - 1, i + 1)
        sp.append(np.linalg.norm((sm[b] - sm[a]) * fs / (b - a)))
    return sm, np.array(sp)


def resample(t: F, x: F, valid: NDArray[np.bool_], fs: float, max_gap: float) -> tuple[
        F, NDArray[np.bool_], NDArray[np.bool_]]:
    vt = t[valid]
    vx = x[valid]
    g = math.floor((vt[-1] - vt[0]) * fs + 1e-9) + 1
    out = np.full((g, x.shape[1]), np.nan)
    ok = np.zeros(g, bool)
    meas = np.zeros(g, bool)
    for q in range(g):
        tq = vt[0] + q / fs
        before = [i for i in range(len(vt)) if vt[i] <= tq]
        after = [i for i in range(len(vt)) if vt[i] > tq]
        p = before[-1] if before else None
        nx = after[0] if after else None
        near = (p is not None and abs(vt[p] - tq) <= 0.5 / fs) or (
            nx is not None and abs(vt[nx] - tq) <= 0.5 / fs)
        if p is not None and vt[p] == tq:
            out[q] = vx[p]
            ok[q] = True
        elif p is not None and nx is not None and vt[nx] - vt[p] <= max_gap:
            w = (tq - vt[p]) / (vt[nx] - vt[p])
            out[q] = vx[p] + w * (vx[nx] - vx[p])
            ok[q] = True
        meas[q] = near and ok[q]
    return out, ok, meas


# --------------------------------------------------------------------------------------------
# windows and cues


def stats(obs: F, lo: F, hi: F) -> F:
    out = []
    for j in range(obs.shape[1]):
        col = obs[:, j]
        seen = col[~np.isnan(col)]
        fin = seen[np.isfinite(seen)]
        inside = np.sum((seen >= lo[j]) & (seen <= hi[j]))
        out.append([len(seen), inside, fin.mean() if len(fin) else np.nan,
                    fin.std() if len(fin) else np.nan, len(fin)])
    return np.array(out, float)


class Cue:
    """One parameter's cue state machine, written as plainly as possible."""

    def __init__(self, lo: float, hi: float, h: float, dwell: int, clear: int) -> None:
        self.lo, self.hi, self.h, self.dwell, self.clear = lo, hi, h, dwell, clear
        self.active = 0
        self.run_side = 0
        self.run = 0
        self.back = 0

    def step(self, v: float) -> tuple[int, bool] | None:
        if math.isnan(v):
            return None
        side = -1 if v < self.lo else (1 if v > self.hi else 0)
        if side and side == self.run_side:
            self.run += 1
        else:
            self.run_side, self.run = side, (1 if side else 0)
        if self.active:
            self.back = self.back + 1 if self.lo + self.h <= v <= self.hi - self.h else 0
        if side and side != self.active and self.run >= self.dwell:
            self.active, self.back = side, 0
            return side, True
        if self.active and self.back >= self.clear:
            d = self.active
            self.active, self.back = 0, 0
            return d, False
        return None


def fill_gaps(poses: F, ok: NDArray[np.bool_], max_gap: int) -> tuple[F, NDArray[np.bool_],
                                                                       NDArray[np.bool_]]:
    poses = poses.copy()
    ok = ok.copy()
    interp = np.zeros(len(ok), bool)
    idx = np.flatnonzero(ok)
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= max_gap + 1:
            qa, qb = poses[a, 3:], poses[b, 3:]
            if qa @ qb < 0:
                qb = -qb
            for k in range(a + 1, b):
                w = (k - a) / (b - a)
                poses[k, :3] = poses[a, :3] + w * (poses[b, :3] - poses[a, :3])
                q = (1 - w) * qa + w * qb
                poses[k, 3:] = q / np.linalg.norm(q)
                ok[k] = interp[k] = True
    return poses, ok, interp
