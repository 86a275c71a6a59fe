"""Numba options come from sim_kernels._config only (stumpy's rule)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from numba.core.registry import CPUDispatcher

import sim_kernels
from sim_kernels._config import CHUNK_JIT, FASTMATH, JIT

# per-chunk entry points called from the controller loop keep the GIL (CHUNK_JIT)
CHUNK_ENTRY_POINTS = {"_feed_kernel"}


def _modules() -> list[object]:
    return [importlib.import_module(f"sim_kernels.{m.name}")
            for m in pkgutil.iter_modules(sim_kernels.__path__)]


def test_every_kernel_uses_the_config_flags() -> None:
    seen = 0
    for mod in _modules():
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__:  # type: ignore[attr-defined]
                opts = obj.targetoptions
                assert set(opts["fastmath"]) == set(FASTMATH), name
                flags = CHUNK_JIT if name in CHUNK_ENTRY_POINTS else JIT
                for key in ("nogil", "error_model"):
                    assert opts[key] == flags[key], (name, key)
                # cache=True shows as an on-disk cache object instead of numba's NullCache
                cache = getattr(obj, "_cache")  # noqa: B009 (numba internal)
                assert type(cache).__name__ != "NullCache", name
                seen += 1
    assert seen >= 30  # the test must actually look at the kernels


def test_fastmath_keeps_nan_and_inf_semantics() -> None:
    assert "nnan" not in FASTMATH and "ninf" not in FASTMATH


def test_no_kernel_sets_its_own_flags() -> None:
    root = Path(sim_kernels.__file__).parent
    pat = re.compile(r"\bn?jit\(|fastmath\s*=|numba\.jit|nb\.jit|nb\.njit|@njit")
    for path in root.glob("*.py"):
        if path.name == "_config.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not pat.search(text), f"{path.name} sets numba options itself"
