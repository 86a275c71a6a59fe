"""Streaming, open-ended DTW: the trainee trace arrives chunk by chunk.

The state is one row of the accumulated-cost matrix (``m + 1`` floats for an ``m``-sample
reference). Each new trainee sample advances it by one row, touching only the band
``|i - j| <= window - 1`` (``O(window * d)`` work, never a recomputation). After each chunk
the object reports the best-matching reference position ``argmin_j D(i, j)`` (progress through
the exercise) and the running distance ``sqrt(min_j D(i, j))``; both equal
:func:`sim_kernels.dtw.dtw_open_end` on everything consumed so far (tested).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim_kernels._config import jit
from sim_kernels._validate import as_series, check_window

_INF = np.inf
_UNBOUNDED = 1 << 62


@jit
def _stream_rows(chunk: NDArray[np.float64], ref: NDArray[np.float64], buf: NDArray[np.float64],
                 i0: int, w: int) -> tuple[float, int, int]:
    """Advance ``buf`` (``buf[j + 1] = D(i - 1, j)``) by the rows of ``chunk`` (global rows
    ``i0 ..``). Returns ``(min of last row, its column, status)``; status 1 = a non-finite
    input value (state untouched from that row on), 0 = ok."""
    m = ref.shape[0]
    d = ref.shape[1]
    best = _INF
    arg = -1
    for r in range(chunk.shape[0]):
        for k in range(d):
            if not np.isfinite(chunk[r, k]):
                return _INF, -1, 1
    for r in range(chunk.shape[0]):
        i = i0 + r
        lo = max(0, i - w + 1)
        hi = min(m - 1, i + w - 1)
        best = _INF
        arg = -1
        if lo > hi:
            continue  # the band has left the reference: no open-end alignment any more
        diag = buf[lo]
        buf[lo] = _INF
        left = _INF
        for j in range(lo, hi + 1):
            c = 0.0
            for k in range(d):
                t = chunk[r, k] - ref[j, k]
                c += t * t
            up = buf[j + 1]
            v = c + min(diag, up, left)
            diag = up
            buf[j + 1] = v
            left = v
            if v < best:
                best = v
                arg = j
    return best, arg, 0


class StreamingDTW:
    """Open-ended DTW of a growing trainee trace against a fixed reference.

    ``reference`` is (m, d) or (m,); ``window`` is the Sakoe–Chiba half-width in samples
    (``|i - j| <= window - 1``; None = unconstrained, ``O(m)`` per sample).
    """

    __slots__ = ("_buf", "_d", "_dist", "_i", "_pos", "_ref", "_w")

    def __init__(self, reference: NDArray[np.floating], window: int | None = None) -> None:
        self._ref = as_series(reference, "reference")
        self._d = int(self._ref.shape[1])
        m = int(self._ref.shape[0])
        # None: no band at all, for any trainee length (a huge half-width)
        self._w = check_window(window, _UNBOUNDED, 1)
        self._buf = np.empty(m + 1)
        self._i = 0
        self._pos = -1
        self._dist = float("inf")
        self.reset()

    def reset(self) -> None:
        """Forget the trainee samples (start of a new attempt)."""
        self._buf[:] = _INF
        self._buf[0] = 0.0
        self._i = 0
        self._pos = -1
        self._dist = float("inf")

    def update(self, chunk: NDArray[np.floating]) -> tuple[float, int]:
        """Consume ``chunk`` (k, d) or (k,) and return ``(distance, position)``."""
        c = np.asarray(chunk, dtype=np.float64)
        if c.ndim == 1 and self._d == 1:
            c = c.reshape(-1, 1)
        if c.ndim != 2 or c.shape[1] != self._d:
            raise ValueError(f"chunk must have shape (k, {self._d}), got {np.shape(chunk)}")
        if c.shape[0] == 0:
            return self._dist, self._pos
        if not c.flags.c_contiguous:
            c = np.ascontiguousarray(c)
        best, arg, status = _stream_rows(c, self._ref, self._buf, self._i, self._w)
        if status != 0:
            raise ValueError("chunk contains NaN or inf (interpolate gaps before aligning)")
        self._i += int(c.shape[0])
        self._pos = int(arg)
        self._dist = float(np.sqrt(best))
        return self._dist, self._pos

    @property
    def distance(self) -> float:
        """Running open-end DTW distance (inf before the first sample)."""
        return self._dist

    @property
    def position(self) -> int:
        """Best-matching reference index after the last chunk (-1 before the first)."""
        return self._pos

    @property
    def progress(self) -> float:
        """Position as a fraction of the reference, 0..1 (0 before the first sample)."""
        m = self._ref.shape[0]
        if self._pos < 0:
            return 0.0
        return 1.0 if m == 1 else self._pos / (m - 1)

    @property
    def samples(self) -> int:
        """Trainee samples consumed since the last reset."""
        return self._i
