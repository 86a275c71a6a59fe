"""After warmup() the scorer's hot path compiles nothing (every signature already exists)."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
from numba.core.registry import CPUDispatcher
from scoring.synth import FILLET_GEOMETRY, FILLET_RUBRIC, expert_trace, novice_trace

import sim_kernels
from lab_controller.scoring import SessionScorer
from sim_kernels import warmup
from sim_kernels.rubric import Rubric


def _signatures() -> dict[str, int]:
    out = {}
    for m in pkgutil.iter_modules(sim_kernels.__path__):
        mod = importlib.import_module(f"sim_kernels.{m.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher):
                out[f"{m.name}.{name}"] = len(obj.signatures)
    return out


def test_hot_path_compiles_nothing_after_warmup() -> None:
    warmup()
    before = _signatures()
    rub = Rubric.from_dict({**FILLET_RUBRIC, "metrics": {
        **FILLET_RUBRIC["metrics"],  # type: ignore[dict-item]
        "weave_amplitude": {"ideal": 2, "min": 1, "max": 3},
        "weave_period": {"ideal": 0.8, "min": 0.5, "max": 1.2}}})
    scorer = SessionScorer(FILLET_GEOMETRY, expert_trace(duration=3.0), rub, 120.0, 0)
    trace = novice_trace(duration=4.0)
    valid = np.ones((len(trace), 1), bool)
    valid[30:35] = False
    for i in range(0, len(trace), 12):
        scorer.feed(i / 120.0, 1 / 120.0, trace[i:i + 12, None, :].astype(np.float32),
                    valid[i:i + 12])
    scorer.finish()
    after = _signatures()
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}
