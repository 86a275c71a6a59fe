"""Motion quality: smoothness (SPARC, LDLJ), path length, idle time, sub-movements, and the
resampling rule that makes them robust to tracker jitter and short gaps.

Definitions (pinned; tests hold them against ``monalysa`` and slow references):

* **SPARC** of a speed profile ``v`` sampled at ``fs``: ``nfft = 2**(ceil(log2 n) + pad)``
  (pad = 4), magnitude spectrum ``|FFT(v, nfft)|`` normalised by its maximum, frequencies
  ``k fs / nfft``; keep bins with ``f <= fc`` (10 Hz), then the span from the first to the last
  bin whose magnitude is ``>= amp_th`` (0.05); SPARC = minus the arc length of that curve
  with frequency normalised by the span's width. Same as ``monalysa.quality.smoothness.sparc``.
  A profile with no motion (all zero) gives NaN.
* **LDLJ** of a velocity (n, k) or speed (n,) profile: ``-ln(T**3 / A**2 * J)`` with
  ``T = n / fs`` (monalysa counts n samples, not n - 1 intervals), ``A = max |v|`` and
  ``J = sum(|second difference of v| * fs**2)**2 / fs``. Same as monalysa's
  ``log_dimensionless_jerk(..., data_type='vel')``.
* **Segmentation** (movement start/end), applied before both: threshold
  ``theta = max(rel_threshold * peak speed, idle_speed)``; the movement runs from the first to
  the last sample with ``speed >= theta``. Rest padding changes LDLJ a lot (T grows, J not) and
  SPARC hardly at all, so scores only ever use the trimmed span.
* **Speed from positions**: centred moving average over ``smooth_s`` (odd sample count), then
  central differences (one-sided at the ends), then the Euclidean norm (mm/s).
* **Idle time**: seconds with ``speed < idle_speed``. **Path length**: sum of distances between
  consecutive smoothed positions. **Sub-movements**: peaks of the speed that rise and then
  fall by at least ``max(0.1 * peak, idle_speed)`` (zig-zag rule).
* **Resampling** (:func:`resample`): onto a uniform grid at ``fs`` from the first to the last
  valid timestamp; each grid point is interpolated linearly between the nearest valid samples
  before and after it if they are at most ``max_gap_s`` apart, otherwise it is a gap (invalid).
  A grid point is *measured* if a valid sample lies within half a period of it, else
  *interpolated*; :class:`ResampleReport` gives both fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import prange as _prange
from numpy.typing import NDArray

from sim_kernels._config import jit, pjit
from sim_kernels._validate import as_finite, check_rate

# --------------------------------------------------------------------------------------------
# FFT (radix 2, so SPARC runs inside numba's parallel re-scoring; nfft is a power of two)


@jit
def _fft_inplace(a: NDArray[np.complex128]) -> None:
    """Iterative radix-2 decimation-in-time FFT of a power-of-two length array, in place.
    Twiddles come from cos/sin directly (no recurrence), so rounding stays at O(eps log n)."""
    n = a.shape[0]
    j = 0
    for i in range(1, n):
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            tmp = a[i]
            a[i] = a[j]
            a[j] = tmp
    half_max = n // 2
    tw = np.empty(max(1, half_max), np.complex128)
    for k in range(half_max):
        ang = -2.0 * math.pi * k / n
        tw[k] = complex(math.cos(ang), math.sin(ang))
    length = 2
    while length <= n:
        half = length // 2
        step = n // length
        for start in range(0, n, length):
            for k in range(half):
                w = tw[k * step]
                u = a[start + k]
                v = a[start + k + half] * w
                a[start + k] = u + v
                a[start + k + half] = u - v
        length <<= 1


@jit
def _nfft(n: int, padlevel: int) -> int:
    # 2**(ceil(log2 n) + padlevel), computed on integers (log2 of a power of two is exact)
    p = 0
    while (1 << p) < n:
        p += 1
    return 1 << (p + padlevel)


@jit
def _sparc(v: NDArray[np.float64], fs: float, padlevel: int, fc: float,
           amp_th: float) -> float:
    n = v.shape[0]
    nfft = _nfft(n, padlevel)
    a = np.zeros(nfft, np.complex128)
    for i in range(n):
        a[i] = v[i]
    _fft_inplace(a)
    half = nfft // 2 + 1
    mag = np.empty(half)
    mx = 0.0
    for k in range(half):
        mag[k] = abs(a[k])
        mx = max(mx, mag[k])
    if mx == 0.0:
        return np.nan
    df = fs / nfft
    # bins with f <= fc (f = k * df, as numpy.arange computes it)
    kc = 0
    while kc + 1 < half and (kc + 1) * df <= fc:
        kc += 1
    first = -1
    last = -1
    for k in range(kc + 1):
        if mag[k] / mx >= amp_th:
            if first < 0:
                first = k
            last = k
    if first < 0 or last == first:
        return np.nan
    width = last * df - first * df
    s = 0.0
    for k in range(first + 1, last + 1):
        dfk = (k * df - (k - 1) * df) / width
        dm = mag[k] / mx - mag[k - 1] / mx
        s += math.sqrt(dfk * dfk + dm * dm)
    return -s


@jit
def _ldlj(vel: NDArray[np.float64], fs: float) -> float:
    n = vel.shape[0]
    k = vel.shape[1]
    if n < 3:
        return np.nan
    dt = 1.0 / fs
    amp = 0.0
    for i in range(n):
        s = 0.0
        for c in range(k):
            s += vel[i, c] * vel[i, c]
        amp = max(amp, s)
    jerk = 0.0
    for i in range(n - 2):
        s = 0.0
        for c in range(k):
            t = (vel[i + 2, c] - 2.0 * vel[i + 1, c] + vel[i, c]) / (dt * dt)
            s += t * t
        jerk += s
    jerk *= dt
    dur = (n * dt) ** 3
    if amp == 0.0 or jerk == 0.0:
        return np.nan
    return -math.log(dur) + math.log(amp) - math.log(jerk)


@jit
def _span(speed: NDArray[np.float64], rel: float, idle: float) -> tuple[int, int]:
    """First and last+1 index with speed >= max(rel * peak, idle); (0, 0) if none."""
    peak = 0.0
    for x in speed:
        peak = max(peak, x)
    th = max(rel * peak, idle)
    first = -1
    last = -1
    for i in range(speed.shape[0]):
        if speed[i] >= th and peak > 0.0:
            if first < 0:
                first = i
            last = i
    if first < 0:
        return 0, 0
    return first, last + 1


@jit
def _submovements(speed: NDArray[np.float64], prom: float) -> int:
    trough = np.inf
    peak = -np.inf
    rising = False
    count = 0
    for x in speed:
        if not rising:
            trough = min(trough, x)
            if x - trough >= prom:
                rising = True
                peak = x
        else:
            peak = max(peak, x)
            if peak - x >= prom:
                count += 1
                rising = False
                trough = x
    return count


@jit
def _smooth_speed(pos: NDArray[np.float64], fs: float, half: int,
                  sm: NDArray[np.float64], speed: NDArray[np.float64]) -> None:
    """Centred moving average (``2 half + 1`` samples, shrinking at the ends) then central
    differences; ``sm`` receives the smoothed positions, ``speed`` the norms."""
    n = pos.shape[0]
    k = pos.shape[1]
    for i in range(n):
        lo = max(0, i - half)
        hi = min(n - 1, i + half)
        for c in range(k):
            s = 0.0
            for j in range(lo, hi + 1):
                s += pos[j, c]
            sm[i, c] = s / (hi - lo + 1)
    for i in range(n):
        if n == 1:
            speed[i] = 0.0
            continue
        a = max(0, i - 1)
        b = min(n - 1, i + 1)
        s = 0.0
        for c in range(k):
            t = (sm[b, c] - sm[a, c]) * fs / (b - a)
            s += t * t
        speed[i] = math.sqrt(s)


@jit
def _quality(pos: NDArray[np.float64], fs: float, half: int, rel: float, idle: float,
             out: NDArray[np.float64]) -> None:
    """out = sparc, ldlj, path_mm, idle_s, submovements, duration_s, start, end."""
    n = pos.shape[0]
    sm = np.empty_like(pos)
    speed = np.empty(n)
    _smooth_speed(pos, fs, half, sm, speed)
    s, e = _span(speed, rel, idle)
    path = 0.0
    for i in range(1, n):
        d = 0.0
        for c in range(pos.shape[1]):
            t = sm[i, c] - sm[i - 1, c]
            d += t * t
        path += math.sqrt(d)
    idle_n = 0
    peak = 0.0
    for i in range(n):
        if speed[i] < idle:
            idle_n += 1
        peak = max(peak, speed[i])
    out[2] = path
    out[3] = idle_n / fs
    out[4] = _submovements(speed, max(0.1 * peak, idle))
    out[5] = (e - s) / fs
    out[6] = s
    out[7] = e
    if e - s >= 3:
        seg = speed[s:e].copy()
        out[0] = _sparc(seg, fs, 4, 10.0, 0.05)
        out[1] = _ldlj(seg.reshape(-1, 1), fs)
    else:
        out[0] = np.nan
        out[1] = np.nan


@jit
def _resample(t: NDArray[np.float64], x: NDArray[np.float64], valid: NDArray[np.bool_],
              t0: float, period: float, max_gap: float, out: NDArray[np.float64],
              ok: NDArray[np.bool_], measured: NDArray[np.bool_]) -> None:
    n = t.shape[0]
    k = x.shape[1]
    g = out.shape[0]
    p = -1  # last valid index with t <= grid time
    nxt = 0  # first valid index with t > grid time (search pointer)
    for q in range(g):
        tq = t0 + q * period
        while nxt < n and (not valid[nxt] or t[nxt] <= tq):
            if valid[nxt]:
                p = nxt
            nxt += 1
        # nxt is the first valid sample after tq (or n)
        near = False
        if p >= 0 and abs(t[p] - tq) <= 0.5 * period:
            near = True
        if nxt < n and abs(t[nxt] - tq) <= 0.5 * period:
            near = True
        measured[q] = near
        if p >= 0 and t[p] == tq:
            for c in range(k):
                out[q, c] = x[p, c]
            ok[q] = True
        elif p >= 0 and nxt < n and t[nxt] - t[p] <= max_gap:
            w = (tq - t[p]) / (t[nxt] - t[p])
            for c in range(k):
                out[q, c] = x[p, c] + w * (x[nxt, c] - x[p, c])
            ok[q] = True
        else:
            ok[q] = False
            measured[q] = False
            for c in range(k):
                out[q, c] = np.nan


@pjit
def _quality_batch(pos: NDArray[np.float64], offsets: NDArray[np.int64], fs: float, half: int,
                   rel: float, idle: float, out: NDArray[np.float64]) -> None:
    """Motion quality of many sessions concatenated in ``pos`` (``offsets`` = boundaries)."""
    for s in _prange(offsets.shape[0] - 1):
        _quality(pos[offsets[s]:offsets[s + 1]], fs, half, rel, idle, out[s])


# --------------------------------------------------------------------------------------------
# public wrappers


def sparc(speed: object, fs: float, padlevel: int = 4, fc: float = 10.0,
          amp_th: float = 0.05) -> float:
    """Spectral arc length of a speed profile (module doc); NaN for a profile with no motion."""
    v = as_finite(speed, "speed", 1)
    if v.shape[0] < 1:
        raise ValueError("speed is empty")
    if not (0 <= padlevel <= 8):
        raise ValueError("padlevel must be in 0..8")
    f = check_rate(fs)
    if not (0.0 < fc < f / 2.0):
        raise ValueError(f"fc must be in (0, fs/2), got {fc} at fs={f}")
    return float(_sparc(v, f, int(padlevel), float(fc), float(amp_th)))


def ldlj(velocity: object, fs: float) -> float:
    """Log dimensionless jerk of a velocity (n, k) or speed (n,) profile, n >= 3 (module doc)."""
    v = as_finite(velocity, "velocity", (1, 2))
    if v.ndim == 1:
        v = v.reshape(-1, 1)
    if v.shape[0] < 3:
        raise ValueError("LDLJ needs at least 3 samples")
    return float(_ldlj(v, check_rate(fs)))


def movement_span(speed: object, rel_threshold: float = 0.05, idle_speed: float = 0.0
                  ) -> tuple[int, int]:
    """``(start, end)`` slice of the movement by the pinned segmentation rule (module doc)."""
    v = as_finite(speed, "speed", 1)
    s, e = _span(v, float(rel_threshold), float(idle_speed))
    return int(s), int(e)


def submovements(speed: object, prominence: float) -> int:
    """Number of speed peaks that rise and fall by at least ``prominence`` (zig-zag rule)."""
    v = as_finite(speed, "speed", 1)
    return int(_submovements(v, float(prominence)))


@dataclass(frozen=True)
class MotionQuality:
    """Motion-quality summary of one trace (NaN smoothness when the movement is < 3 samples)."""

    sparc: float
    ldlj: float
    path_length_mm: float
    idle_time_s: float
    submovements: int
    movement_time_s: float
    movement_start: int
    movement_end: int


def speed_from_positions(positions: object, fs: float, smooth_s: float = 0.05
                         ) -> NDArray[np.float64]:
    """Tip speed (mm/s) by the pinned rule (module doc)."""
    pos = as_finite(positions, "positions", 2)
    f = check_rate(fs)
    half = max(0, round(smooth_s * f) // 2)
    sm = np.empty_like(pos)
    speed = np.empty(pos.shape[0])
    _smooth_speed(pos, f, half, sm, speed)
    return speed


def motion_quality(positions: object, fs: float, smooth_s: float = 0.05,
                   rel_threshold: float = 0.05, idle_speed: float = 2.0) -> MotionQuality:
    """SPARC and LDLJ of the segmented speed, path length, idle time, sub-movements.

    ``positions`` (n, k) in mm on a uniform grid (see :func:`resample`); ``idle_speed`` mm/s
    (2 mm/s: below the slowest welding travel speeds in the domain notes, above jitter after
    smoothing).
    """
    pos = as_finite(positions, "positions", 2)
    if pos.shape[0] < 1:
        raise ValueError("positions is empty")
    f = check_rate(fs)
    out = np.empty(8)
    _quality(pos, f, max(0, round(smooth_s * f) // 2), float(rel_threshold),
             float(idle_speed), out)
    return MotionQuality(float(out[0]), float(out[1]), float(out[2]), float(out[3]),
                         int(out[4]), float(out[5]), int(out[6]), int(out[7]))


@dataclass(frozen=True)
class ResampleReport:
    """How much of a resampled trace is real data."""

    samples: int
    measured_fraction: float
    interpolated_fraction: float
    gap_fraction: float
    gaps: int
    longest_gap_s: float


def resample(times: object, values: object, valid: object | None, fs: float,
             max_gap_s: float = 0.1
             ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_],
                        ResampleReport]:
    """Resample ``values`` (n, k) taken at jittered ``times`` (s, increasing) onto a uniform
    grid at ``fs`` (rule in the module doc). ``max_gap_s`` default 0.1 s: 12 samples at 120 Hz,
    shorter than a cue dwell, so a bridged gap never hides a fault long enough to cue.
    Returns grid times, values (NaN in gaps), a validity mask and a report."""
    t = as_finite(times, "times", 1)
    x = as_finite(values, "values", (1, 2)) if valid is None else np.ascontiguousarray(
        np.asarray(values, dtype=np.float64))
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[0] != t.shape[0]:
        raise ValueError("values must be (n, k) with one row per time")
    if valid is None:
        ok_in = np.ones(t.shape[0], np.bool_)
    else:
        ok_in = np.ascontiguousarray(np.asarray(valid, dtype=np.bool_))
        if ok_in.shape != t.shape:
            raise ValueError("valid must have one flag per time")
        ok_in = ok_in & np.isfinite(x).all(axis=1)
    if np.any(np.diff(t) <= 0):
        raise ValueError("times must be strictly increasing")
    f = check_rate(fs)
    period = 1.0 / f
    vt = t[ok_in]
    if vt.size == 0:
        raise ValueError("no valid samples")
    g = math.floor((vt[-1] - vt[0]) * f + 1e-9) + 1
    out = np.empty((g, x.shape[1]))
    ok = np.empty(g, np.bool_)
    measured = np.empty(g, np.bool_)
    _resample(t, x, ok_in, float(vt[0]), period, float(max_gap_s), out, ok, measured)
    grid = vt[0] + np.arange(g) * period
    gaps, longest = _gap_runs(ok, period)
    rep = ResampleReport(
        samples=g,
        measured_fraction=float(measured.mean()),
        interpolated_fraction=float((ok & ~measured).mean()),
        gap_fraction=float((~ok).mean()),
        gaps=gaps,
        longest_gap_s=longest,
    )
    return grid, out, ok, rep


def _gap_runs(ok: NDArray[np.bool_], period: float) -> tuple[int, float]:
    """Number of runs of invalid samples and the longest run in seconds."""
    bad = ~ok
    if not bad.any():
        return 0, 0.0
    edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return int(starts.size), float((ends - starts).max() * period)


def motion_quality_batch(traces: list[NDArray[np.floating]], fs: float, smooth_s: float = 0.05,
                         rel_threshold: float = 0.05, idle_speed: float = 2.0
                         ) -> list[MotionQuality]:
    """:func:`motion_quality` of many traces in parallel (one prange item per trace)."""
    arrs = [as_finite(p, f"traces[{i}]", 2) for i, p in enumerate(traces)]
    if not arrs:
        return []
    k = arrs[0].shape[1]
    if any(a.shape[1] != k or a.shape[0] < 1 for a in arrs):
        raise ValueError("all traces need the same column count and >= 1 sample")
    f = check_rate(fs)
    offsets = np.zeros(len(arrs) + 1, np.int64)
    offsets[1:] = np.cumsum([a.shape[0] for a in arrs])
    out = np.empty((len(arrs), 8))
    _quality_batch(np.ascontiguousarray(np.concatenate(arrs)), offsets, f,
                   max(0, round(smooth_s * f) // 2), float(rel_threshold),
                   float(idle_speed), out)
    return [MotionQuality(float(o[0]), float(o[1]), float(o[2]), float(o[3]), int(o[4]),
                          float(o[5]), int(o[6]), int(o[7])) for o in out]
