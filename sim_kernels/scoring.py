"""Rubric arithmetic: per-metric statistics and motion quality → a 0–100 score, pass, level.

Everything here is deterministic arithmetic in a fixed order; ``docs/scoring.md`` states it in
words a trainee can follow. Inputs are the per-metric observation statistics of
:mod:`sim_kernels.windows` (``count, inside, mean, std, finite``), the session's SPARC and the
RMS time-warped distance to the expert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim_kernels.parameters import CUE_TEXT, UNITS
from sim_kernels.rubric import Rubric


def clip01(x: float) -> float:
    """Clamp to [0, 1] (NaN → 0: an unmeasurable quantity earns nothing)."""
    if x != x:
        return 0.0
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


def round_score(x: float) -> float:
    """Half-up rounding to 2 decimals (the reported score; pass and level use it)."""
    return math.floor(x * 100.0 + 0.5) / 100.0


@dataclass(frozen=True)
class MetricBreakdown:
    """One rubric metric of one session."""

    name: str
    unit: str
    ideal: float
    min: float
    max: float
    weight: float
    observations: int
    mean: float  # NaN if no finite observation
    std: float
    fraction_in_window: float  # 0..1 (0 if never observed)
    consistency: float  # 0..1
    fraction_below: float
    fraction_above: float
    #: what a trainee should change most: "too_fast", "too_steep", ... or "" if on target
    advice: str


@dataclass(frozen=True)
class ComponentScores:
    """The four components, each 0..100 (``expert`` None when there is no reference)."""

    time_in_window: float
    consistency: float
    expert: float | None
    smoothness: float


@dataclass(frozen=True)
class ScoreResult:
    """Final mark of one session under one rubric version."""

    rubric_id: str
    rubric_version: int
    score: float  # 0..100, rounded to 2 decimals
    passed: bool
    level: int | None  # 5..1, None below every threshold
    level_name: str  # e.g. "三级/高级工", "" if none
    components: ComponentScores
    metrics: tuple[MetricBreakdown, ...]
    weakest: str  # metric losing the most weighted time-in-window, "" if none lost any
    sparc: float
    expert_rms: float  # dimensionless RMS deviation from the expert (NaN if no reference)


def score_from_stats(rubric: Rubric, stats: NDArray[np.float64],
                     below: NDArray[np.float64], above: NDArray[np.float64], sparc: float,
                     expert_rms: float) -> ScoreResult:
    """Combine per-metric stats (rows in ``rubric.metric_names()`` order, columns
    ``count, inside, mean, std, finite``), counts of observations below / above the window,
    SPARC and the expert RMS into a :class:`ScoreResult` (arithmetic: docs/scoring.md)."""
    names = rubric.metric_names()
    if stats.shape != (len(names), 5):
        raise ValueError(f"stats must be ({len(names)}, 5), got {stats.shape}")
    rows: list[MetricBreakdown] = []
    wsum = 0.0
    tiw = 0.0
    cons = 0.0
    worst_loss = 0.0
    weakest = ""
    for j, name in enumerate(names):
        rule = rubric.metrics[name]  # type: ignore[index]
        count = int(stats[j, 0])
        frac = stats[j, 1] / count if count > 0 else 0.0
        std = float(stats[j, 3])
        c = clip01(1.0 - std / rule.effective_std_limit) if stats[j, 4] > 0 else 0.0
        fb = below[j] / count if count > 0 else 0.0
        fa = above[j] / count if count > 0 else 0.0
        advice = ""
        if fb > 0.0 or fa > 0.0:
            low, high = CUE_TEXT[name]
            advice = low[0] if fb >= fa else high[0]
        rows.append(MetricBreakdown(
            name=name, unit=UNITS[name], ideal=rule.ideal, min=rule.min, max=rule.max,
            weight=rule.weight, observations=count, mean=float(stats[j, 2]), std=std,
            fraction_in_window=float(frac), consistency=float(c), fraction_below=float(fb),
            fraction_above=float(fa), advice=advice))
        wsum += rule.weight
        tiw += rule.weight * frac
        cons += rule.weight * c
        loss = rule.weight * (1.0 - frac)
        if loss > worst_loss:
            worst_loss = loss
            weakest = name
    tiw /= wsum
    cons /= wsum
    sm = clip01((sparc - rubric.smoothness.worst) / (rubric.smoothness.best
                                                      - rubric.smoothness.worst))
    al = rubric.alignment
    expert: float | None = None
    if expert_rms == expert_rms:  # a reference exists
        expert = clip01((al.zero_at - expert_rms) / (al.zero_at - al.full_at))
    cw = rubric.components
    num = cw.time_in_window * tiw + cw.consistency * cons + cw.smoothness * sm
    den = cw.time_in_window + cw.consistency + cw.smoothness
    if expert is not None:
        num += cw.expert * expert
        den += cw.expert
    raw = 100.0 * num / den if den > 0.0 else 0.0
    score = round_score(raw)
    lvl = rubric.level_for(score)
    return ScoreResult(
        rubric_id=rubric.rubric_id,
        rubric_version=rubric.version,
        score=score,
        passed=score >= rubric.pass_mark,
        level=None if lvl is None else lvl.level,
        level_name="" if lvl is None else lvl.name_zh,
        components=ComponentScores(
            time_in_window=round_score(100.0 * tiw),
            consistency=round_score(100.0 * cons),
            expert=None if expert is None else round_score(100.0 * expert),
            smoothness=round_score(100.0 * sm),
        ),
        metrics=tuple(rows),
        weakest=weakest,
        sparc=float(sparc),
        expert_rms=float(expert_rms),
    )


def window_score(rubric: Rubric, stats: NDArray[np.float64]) -> float:
    """Real-time window score 0..100: weighted mean fraction in window over the metrics
    observed in the window (NaN if none was)."""
    return window_score_rows(window_weights(rubric), stats.tolist())


def window_weights(rubric: Rubric) -> tuple[float, ...]:
    """The metric weights in score-table order (precomputed once for :func:`window_score_rows`)."""
    return tuple(float(rubric.metrics[n].weight)  # type: ignore[index]
                 for n in rubric.metric_names())


def window_score_rows(weights: tuple[float, ...], rows: list[list[float]]) -> float:
    """:func:`window_score` on the stats rows as Python floats (``stats.tolist()``): the same
    IEEE operations in the same order, without numpy scalars (the live path, per window)."""
    num = 0.0
    den = 0.0
    for j, w in enumerate(weights):
        row = rows[j]
        if row[0] > 0:
            num += w * row[1] / row[0]
            den += w
    return round_score(100.0 * num / den) if den > 0.0 else float("nan")
