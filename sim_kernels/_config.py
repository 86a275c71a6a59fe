"""The one place numba options are set; every kernel takes its decorator flags from here.

``FASTMATH`` is LLVM's fast-math set *without* ``nnan``/``ninf``: with those two the compiler
may assume no NaN/inf exists and delete ``np.isfinite`` checks and the ``inf`` cells that mark
the outside of a DTW band. A test (tests/kernels/test_config.py) fails if a kernel passes its
own flags instead of these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import numba as nb

#: nsz: ignore the sign of zero; arcp: reciprocal instead of divide; contract: fused multiply-
#: add; afn: approximate libm functions; reassoc: reorder sums (vectorised reductions).
FASTMATH: Final = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: Single-thread kernels. cache=True: compiled code is reused across processes (start-up).
#: nogil=True: callers may run kernels from worker threads.
JIT: Final[dict[str, Any]] = {
    "fastmath": set(FASTMATH),
    "cache": True,
    "nogil": True,
    "error_model": "numpy",
}

#: Parallel drivers (prange over independent items, per-thread buffers).
PARALLEL_JIT: Final[dict[str, Any]] = {**JIT, "parallel": True}


_F = TypeVar("_F", bound=Callable[..., Any])


def jit(fn: _F) -> _F:
    """``numba.njit`` with the house flags (:data:`JIT`); keeps the function's type for mypy."""
    return cast(_F, nb.njit(**JIT)(fn))


def pjit(fn: _F) -> _F:
    """``numba.njit`` with :data:`PARALLEL_JIT` (parallel drivers using ``prange``)."""
    return cast(_F, nb.njit(**PARALLEL_JIT)(fn))


def ijit(fn: _F) -> _F:
    """Like :func:`jit` but always inlined into callers (tiny helpers on hot loops)."""
    return cast(_F, nb.njit(inline="always", **JIT)(fn))
