"""Input checks shared by the public wrappers: clear ``ValueError`` before any kernel runs."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: Channel limit of the multivariate kernels (issue 4: d = 1..16).
MAX_CHANNELS = 16


def as_finite(a: object, name: str, ndim: int | tuple[int, ...]) -> NDArray[np.float64]:
    """Return ``a`` as a C-contiguous float64 array after checking rank, dtype, finiteness."""
    arr = np.asarray(a)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions, "
                         f"got shape {arr.shape}")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or inf")
    return out


def as_series(a: object, name: str) -> NDArray[np.float64]:
    """A time series as (n, d), n >= 1, 1 <= d <= 16; a 1-D input becomes (n, 1)."""
    arr = as_finite(a, name, (1, 2))
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.shape[0] < 1:
        raise ValueError(f"{name} is empty")
    if not (1 <= arr.shape[1] <= MAX_CHANNELS):
        raise ValueError(f"{name} must have 1..{MAX_CHANNELS} channels, got {arr.shape[1]}")
    return arr


def check_window(window: int | None, n: int, m: int) -> int:
    """Sakoe–Chiba window in dtaidistance semantics; None = unconstrained (``max(n, m)``)."""
    full = max(n, m)
    if window is None:
        return full
    if isinstance(window, bool) or not isinstance(window, int | np.integer):
        raise ValueError(f"window must be a positive int or None, got {window!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1 (1 = diagonal only), got {window}")
    return int(min(window, full))


def check_rate(fs: float, name: str = "fs") -> float:
    """A positive finite sample rate in Hz."""
    f = float(fs)
    if not (np.isfinite(f) and f > 0.0):
        raise ValueError(f"{name} must be a positive finite rate in Hz, got {fs!r}")
    return f
