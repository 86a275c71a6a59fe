"""Windowed statistics and the hysteresis cue generator for real-time feedback.

Observation matrices: rows are samples, columns are parameters. ``NaN`` means *no observation*
(a gap, or a window metric between evaluations); any other value, including ``±inf``, is an
observation. ``+inf`` is how an undefined measurement is recorded (e.g. no weave detected: an
infinitely long weave period), so it counts as outside the tolerance window and is left out
of mean and std.

Per window and parameter: ``count`` (observations), ``mean`` and ``std`` (population, ddof=0,
over the finite observations; NaN if none) and ``frac`` = observations inside ``[lo, hi]``
(inclusive) / ``count`` (NaN if no observation).

Cues (per parameter, per sample, NaN samples leave the state untouched): a cue *fires* when the
value has been on one side outside ``[lo, hi]`` for ``dwell`` consecutive observations (the
side's direction: -1 below, +1 above); an active cue *clears* after ``clear`` consecutive
observations inside ``[lo + h, hi - h]`` (``h`` = hysteresis margin), and switches direction if
the value dwells outside on the other side. So a value hovering at a window edge neither fires
repeatedly nor flickers on and off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim_kernels._config import jit
from sim_kernels._validate import as_finite


@jit
def _stats(obs: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64],
           out: NDArray[np.float64]) -> None:
    """``out[j] = (count, inside, mean, std, finite count)`` of column ``j`` (two passes)."""
    n = obs.shape[0]
    p = obs.shape[1]
    for j in range(p):
        cnt = 0
        ins = 0
        fin = 0
        s = 0.0
        for i in range(n):
            v = obs[i, j]
            if v != v:  # NaN: no observation
                continue
            cnt += 1
            if lo[j] <= v <= hi[j]:
                ins += 1
            if np.isfinite(v):
                fin += 1
                s += v
        mean = s / fin if fin > 0 else np.nan
        ss = 0.0
        if fin > 0:
            for i in range(n):
                v = obs[i, j]
                if np.isfinite(v):
                    d = v - mean
                    ss += d * d
        out[j, 0] = cnt
        out[j, 1] = ins
        out[j, 2] = mean
        out[j, 3] = np.sqrt(ss / fin) if fin > 0 else np.nan
        out[j, 4] = fin


@jit
def _window_stats(obs: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64],
                  win: int, out: NDArray[np.float64]) -> None:
    """``out[w]`` = :func:`_stats` of rows ``[w win, (w + 1) win)`` for each complete window."""
    for w in range(out.shape[0]):
        _stats(obs[w * win:(w + 1) * win], lo, hi, out[w])


@jit
def _cues_at(obs: NDArray[np.float64], r0: int, r1: int, cols: NDArray[np.int64],
             lo: NDArray[np.float64], hi: NDArray[np.float64], h: NDArray[np.float64],
             dwell: NDArray[np.int64], clear: NDArray[np.int64], state: NDArray[np.int64],
             events: NDArray[np.int64]) -> int:
    """Advance the cue state machines over rows ``[r0, r1)`` of the columns ``cols`` of
    ``obs`` (parameter ``j`` is column ``cols[j]``); ``state[j] = (active dir, out side,
    out count, back count)``. ``events[e] = (row, param, dir, on)``. Returns #events.
    Reading the columns in place saves the streaming step a copy per chunk."""
    ne = 0
    for i in range(r0, r1):
        for j in range(cols.shape[0]):
            v = obs[i, cols[j]]
            if v != v:
                continue
            side = -1 if v < lo[j] else (1 if v > hi[j] else 0)
            active = state[j, 0]
            if side != 0:
                if side == state[j, 1]:
                    state[j, 2] += 1
                else:
                    state[j, 1] = side
                    state[j, 2] = 1
            else:
                state[j, 1] = 0
                state[j, 2] = 0
            if active != 0:
                if lo[j] + h[j] <= v <= hi[j] - h[j]:
                    state[j, 3] += 1
                else:
                    state[j, 3] = 0
            if side != 0 and side != active and state[j, 2] >= dwell[j]:
                state[j, 0] = side
                state[j, 3] = 0
                events[ne, 0] = i
                events[ne, 1] = j
                events[ne, 2] = side
                events[ne, 3] = 1
                ne += 1
            elif active != 0 and state[j, 3] >= clear[j]:
                state[j, 0] = 0
                state[j, 3] = 0
                events[ne, 0] = i
                events[ne, 1] = j
                events[ne, 2] = active
                events[ne, 3] = 0
                ne += 1
    return ne


@jit
def _cues(obs: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64],
          h: NDArray[np.float64], dwell: NDArray[np.int64], clear: NDArray[np.int64],
          state: NDArray[np.int64],
          events: NDArray[np.int64]) -> int:
    """:func:`_cues_at` over every row and column of ``obs`` (rows of ``events`` from 0)."""
    return _cues_at(obs, 0, obs.shape[0], np.arange(obs.shape[1]), lo, hi, h, dwell, clear,
                    state, events)


def _bounds(lo: object, hi: object, p: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lo_a = as_finite(lo, "lo", 1)
    hi_a = as_finite(hi, "hi", 1)
    if lo_a.shape != (p,) or hi_a.shape != (p,) or np.any(lo_a > hi_a):
        raise ValueError(f"lo and hi must be {p} values with lo <= hi")
    return lo_a, hi_a


def _obs(values: object) -> NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"observations must be a float (n, p) array, got {arr.dtype} "
                         f"{arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def stats(values: object, lo: object, hi: object) -> NDArray[np.float64]:
    """Per column ``(count, inside, mean, std, finite count)`` of an observation matrix."""
    obs = _obs(values)
    lo_a, hi_a = _bounds(lo, hi, obs.shape[1])
    out = np.empty((obs.shape[1], 5))
    _stats(obs, lo_a, hi_a, out)
    return out


def window_stats(values: object, lo: object, hi: object, window: int) -> NDArray[np.float64]:
    """Per complete window of ``window`` rows: (nw, p, 5) of (count, inside, mean, std, finite)."""
    obs = _obs(values)
    if window < 1:
        raise ValueError("window must be >= 1 sample")
    lo_a, hi_a = _bounds(lo, hi, obs.shape[1])
    out = np.empty((obs.shape[0] // window, obs.shape[1], 5))
    _window_stats(obs, lo_a, hi_a, int(window), out)
    return out


@dataclass(frozen=True)
class CueEvent:
    """A cue turning on (``active``) or off for parameter column ``param`` at row ``row``."""

    row: int
    param: int
    direction: int  # -1 below the window, +1 above
    active: bool


class CueTracker:
    """Stateful cue generator over chunks of an observation matrix (module doc)."""

    __slots__ = ("_clear", "_dwell", "_h", "_hi", "_lo", "_p", "_state")

    def __init__(self, lo: object, hi: object, hysteresis: object, dwell: object,
                 clear: object) -> None:
        """``dwell``/``clear``: observations, one int for all parameters or one per parameter
        (a per-window metric is observed once per window, a per-sample one every sample)."""
        lo_a = as_finite(lo, "lo", 1)
        self._p = int(lo_a.shape[0])
        self._lo, self._hi = _bounds(lo_a, hi, self._p)
        h = as_finite(hysteresis, "hysteresis", 1)
        if h.shape != (self._p,) or np.any(h < 0):
            raise ValueError("hysteresis must be one value >= 0 per parameter")
        # a margin above half the window would make "back inside" impossible
        self._h = np.minimum(h, 0.49 * (self._hi - self._lo))
        self._dwell = np.ascontiguousarray(np.broadcast_to(np.asarray(dwell, np.int64), (self._p,)))
        self._clear = np.ascontiguousarray(np.broadcast_to(np.asarray(clear, np.int64), (self._p,)))
        if (self._dwell < 1).any() or (self._clear < 1).any():
            raise ValueError("dwell and clear must be >= 1 observation")
        self._state = np.zeros((self._p, 4), np.int64)

    def update(self, values: object) -> list[CueEvent]:
        """Consume rows; return the cue changes in row order."""
        obs = _obs(values)
        if obs.shape[1] != self._p:
            raise ValueError(f"need {self._p} columns, got {obs.shape[1]}")
        ev = np.empty((obs.shape[0] * self._p, 4), np.int64)
        k = _cues(obs, self._lo, self._hi, self._h, self._dwell, self._clear, self._state, ev)
        return [CueEvent(int(r), int(c), int(d), bool(a)) for r, c, d, a in ev[:k]]

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                              NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """``(lo, hi, hysteresis, dwell, clear, state)`` for kernels that drive this state
        machine themselves (the state array is shared, not copied)."""
        return self._lo, self._hi, self._h, self._dwell, self._clear, self._state

    def active(self) -> NDArray[np.int64]:
        """Current direction per parameter (0 = no cue)."""
        return self._state[:, 0].copy()
