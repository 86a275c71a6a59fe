"""The competition's arithmetic: judgement marks, totals, ranking and the tie-break.

Pure functions over plain rows, so the leaderboard the CLI prints, the one Grafana shows and
the one that is signed are the same computation.

Judgement (WorldSkills): for each aspect, ``judges_required`` (3) judges each give 0..3
independently; the aspect's mark is the mean of the three divided by 3 (so 0..1). If two
judges differ by more than ``max_spread`` (1) the aspect is flagged for review (WorldSkills
asks judges to discuss and re-mark; the mean still stands until they do). The judgement score
is 100 × the mean over the event's aspects. It counts only when every aspect has all its marks
("pending" before that; the live leaderboard shows the measured part meanwhile).

Total = (1 − w) × measurement + w × judgement, w = ``judgement_weight`` (default 0.2, the
80/20 practical/theory split of the domain notes applied to measured/judged criteria).

Measured score: the referee's official mark (from the stored samples) when there is one,
else the live provisional score (the pipeline's final result, or the mean window score while
the session runs), shown as ``provisional``.

Ranking: total descending, compared at the published precision (2 decimals); ties broken by,
in order, (1) the higher measurement score, (2) the higher judgement score, (3) the higher
time-in-window component of the referee's mark (the rubric's core criterion). Competitors
still equal on all of these share the rank ("1, 2, 2, 4"). Competitors without a mark (a
failed start, an aborted session) are listed after everyone ranked, with the reason.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RULES: dict[str, Any] = {
    "judgement_weight": 0.2,
    "aspects": [],
    "judges_required": 3,
    "max_spread": 1,
    "precision": 2,
}


def merged_rules(rules: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(DEFAULT_RULES)
    out.update(rules or {})
    w = float(out["judgement_weight"])
    if not 0.0 <= w <= 1.0:
        raise ValueError("judgement_weight must be within 0..1")
    return out


@dataclass(frozen=True)
class AspectMark:
    aspect: str
    marks: dict[str, int]  # judge -> 0..3
    complete: bool
    value: float | None  # mean / 3, 0..1, when complete
    needs_review: bool


def judgement(marks: Iterable[Mapping[str, Any]], aspects: Sequence[str],
              judges_required: int = 3, max_spread: int = 1
              ) -> tuple[float | None, list[AspectMark]]:
    """One competitor's judge rows (aspect, judge_id, mark) → (0..100 or None, per aspect)."""
    by: dict[str, dict[str, int]] = {a: {} for a in aspects}
    for m in marks:
        by.setdefault(str(m["aspect"]), {})[str(m["judge_id"])] = int(m["mark"])
    out: list[AspectMark] = []
    for aspect in sorted(by) if not aspects else list(aspects):
        js = by.get(aspect, {})
        complete = len(js) >= judges_required
        vals = list(js.values())
        value = statistics.fmean(vals) / 3.0 if complete else None
        review = bool(vals) and max(vals) - min(vals) > max_spread
        out.append(AspectMark(aspect, dict(sorted(js.items())), complete, value, review))
    if not out or not all(a.complete for a in out):
        return None, out
    return 100.0 * statistics.fmean(a.value for a in out if a.value is not None), out


@dataclass
class Standing:
    """One leaderboard row."""

    competitor_id: str
    bib: int
    site_id: str
    heat_id: str | None
    measurement: float | None
    judgement: float | None
    total: float | None
    time_in_window: float | None
    complete: bool
    needs_review: bool
    state: str  # scored (official mark) / provisional (live) / started / late / failed
    reason: str = ""
    rank: int | None = None
    aspects: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


def leaderboard(competitors: Sequence[Mapping[str, Any]],
                entries: Sequence[Mapping[str, Any]],
                marks: Sequence[Mapping[str, Any]],
                judge_rows: Sequence[Mapping[str, Any]],
                rules: Mapping[str, Any] | None = None,
                heat_id: str | None = None) -> list[Standing]:
    """Standings of one event (or one heat of it): see the module docstring for the rules."""
    r = merged_rules(rules)
    w = float(r["judgement_weight"])
    prec = int(r["precision"])
    entry_of = {str(e["competitor_id"]): e for e in entries
                if heat_id is None or e.get("heat_id") == heat_id}
    mark_of = {str(m["competitor_id"]): m for m in marks}
    judged: dict[str, list[Mapping[str, Any]]] = {}
    for j in judge_rows:
        judged.setdefault(str(j["competitor_id"]), []).append(j)
    rows: list[Standing] = []
    for c in competitors:
        cid = str(c["competitor_id"])
        e = entry_of.get(cid)
        if e is None:
            continue  # not in this heat / event
        m = mark_of.get(cid)
        meas = None if m is None else float(m["score"])
        tiw = None
        if m is not None:
            comps = (m.get("result") or {}).get("components") or {}
            v = comps.get("time_in_window")
            tiw = float(v) if isinstance(v, int | float) and math.isfinite(v) else None
        jscore, aspects = judgement(judged.get(cid, ()), r["aspects"], int(r["judges_required"]),
                                    int(r["max_spread"]))
        total = None
        if meas is not None:
            total = round((1.0 - w) * meas + w * (jscore or 0.0), prec)
        complete = meas is not None and (jscore is not None or w == 0.0 or not r["aspects"])
        if m is None:
            state = str(e.get("start_state", "planned"))
        else:
            state = "provisional" if m.get("provisional") else "scored"
        rows.append(Standing(
            competitor_id=cid, bib=int(c["bib"]), site_id=str(c["site_id"]),
            heat_id=e.get("heat_id"), measurement=meas, judgement=jscore, total=total,
            time_in_window=tiw, complete=complete,
            needs_review=any(a.needs_review for a in aspects), state=state,
            reason=str(e.get("reason", "")),
            aspects=[{"aspect": a.aspect, "marks": a.marks, "value": a.value,
                      "needs_review": a.needs_review} for a in aspects]))
    return rank(rows, prec)


def _key(s: Standing, prec: int) -> tuple[float, float, float, float]:
    def v(x: float | None) -> float:
        return -math.inf if x is None else round(x, prec)

    return (v(s.total), v(s.measurement), v(s.judgement), v(s.time_in_window))


def rank(rows: list[Standing], prec: int = 2) -> list[Standing]:
    """Sort by the tie-break key; equal keys share a rank; unmarked rows last, unranked."""
    marked = sorted((s for s in rows if s.total is not None), key=lambda s: (
        tuple(-x for x in _key(s, prec)), s.bib))
    rest = sorted((s for s in rows if s.total is None), key=lambda s: s.bib)
    prev: tuple[float, ...] | None = None
    for i, s in enumerate(marked):
        k = _key(s, prec)
        s.rank = i + 1 if k != prev else marked[i - 1].rank
        prev = k
    return marked + rest
