"""Versioned scoring rubrics as pydantic v2 models (no file I/O: callers read the files).

A rubric says, per process parameter, the ideal value, the instructor-editable tolerance
window ``[min, max]`` and a weight; how the four score components (time in window,
consistency, distance to the expert, smoothness) are weighted; the pass mark; and the score
thresholds of the national skill levels. ``docs/scoring.md`` gives the arithmetic.

Typical use::

    rubric = Rubric.from_json(path.read_text(encoding="utf-8"))   # caller does the I/O
    text = rubric.to_json()                                       # stable, sorted keys

Minimal JSON (every omitted field takes the default shown in the models)::

    {"rubric_id": "fillet-t-basic", "version": 1, "exercise": "fillet_t_joint",
     "process": "welding",
     "metrics": {"work_angle": {"ideal": 45, "min": 38, "max": 52, "weight": 2},
                 "travel_angle": {"ideal": 10, "min": 5, "max": 15},
                 "ctwd": {"ideal": 15, "min": 10, "max": 20},
                 "travel_speed": {"ideal": 6, "min": 4, "max": 8, "weight": 2},
                 "aim_offset": {"ideal": 0, "min": -2, "max": 2}}}

Metric names and units: ``sim_kernels.parameters`` (welding: work_angle deg, travel_angle deg,
ctwd mm, travel_speed mm/s, aim_offset mm, weave_amplitude mm, weave_period s; spray:
gun_distance mm, gun_angle deg, gun_speed mm/s, pass_overlap %).
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sim_kernels.parameters import ALL_PARAMS, SPRAY_PARAMS, WELD_PARAMS, ParamName

#: Bump when a field changes meaning; a rubric file carries the schema version it was
#: written against so an old file is rejected clearly instead of being misread.
SCHEMA_VERSION = 1

_STRICT = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class MetricRule(BaseModel):
    """One process parameter: ideal value, tolerance window, weight (units: see parameters)."""

    model_config = _STRICT

    ideal: float
    min: float
    max: float
    weight: float = Field(default=1.0, ge=0.0)
    #: Standard deviation at which the consistency sub-score reaches 0 (linear from 1 at
    #: std = 0). Default: half the window width, i.e. a trainee whose spread fills the whole
    #: window is judged fully inconsistent.
    std_limit: float | None = Field(default=None, gt=0.0)
    #: Whether this parameter raises real-time cues.
    cue: bool = True
    #: Cue clears only once the value is back inside the window by this margin (same unit as
    #: the parameter). Default: 10 % of the window width.
    hysteresis: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="after")
    def _window_holds_ideal(self) -> MetricRule:
        if not (self.min <= self.ideal <= self.max):
            raise ValueError(f"need min <= ideal <= max, got {self.min}, {self.ideal}, {self.max}")
        if self.min == self.max:
            raise ValueError("tolerance window has zero width")
        return self

    @property
    def effective_std_limit(self) -> float:
        """Std at which consistency is 0 (explicit value or half the window width)."""
        return self.std_limit if self.std_limit is not None else 0.5 * (self.max - self.min)

    @property
    def effective_hysteresis(self) -> float:
        """Cue clearing margin (explicit value or 10 % of the window width)."""
        return self.hysteresis if self.hysteresis is not None else 0.1 * (self.max - self.min)


class ComponentWeights(BaseModel):
    """Weights of the four score components; normalised by their sum."""

    model_config = _STRICT

    time_in_window: float = Field(default=0.5, ge=0.0)
    consistency: float = Field(default=0.2, ge=0.0)
    expert: float = Field(default=0.2, ge=0.0)
    smoothness: float = Field(default=0.1, ge=0.0)

    @model_validator(mode="after")
    def _positive_sum(self) -> ComponentWeights:
        if self.time_in_window + self.consistency + self.expert + self.smoothness <= 0.0:
            raise ValueError("component weights must not all be zero")
        return self


class AlignmentRule(BaseModel):
    """How the time-warped distance to the expert becomes a 0..1 sub-score.

    Features compared: tool-tip position (each axis divided by ``position_scale_mm``) and
    every rubric parameter that is an instantaneous pose quantity (divided by half its window
    width). ``rms`` = DTW distance / sqrt(trainee samples) is then a dimensionless RMS
    deviation; the sub-score is 1 at ``rms <= full_at``, 0 at ``rms >= zero_at``, linear between.
    """

    model_config = _STRICT

    position_scale_mm: float = Field(default=10.0, gt=0.0)
    full_at: float = Field(default=0.5, ge=0.0)
    zero_at: float = Field(default=3.0, gt=0.0)
    #: Open-end band half-width as a fraction of the reference length (``|i - j| < band``
    #: in alignment blocks). Default 1.0 = no band: a trainee may take any time (a slow
    #: trainee lags the expert by more than any fixed band); narrow it to forbid wild warps.
    band_fraction: float = Field(default=1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> AlignmentRule:
        if self.zero_at <= self.full_at:
            raise ValueError("alignment zero_at must exceed full_at")
        return self


class SmoothnessRule(BaseModel):
    """How SPARC (spectral arc length of the tip speed) becomes a 0..1 sub-score.

    SPARC is negative; closer to 0 is smoother. Sub-score is 1 at ``sparc >= best``, 0 at
    ``sparc <= worst``, linear between. Defaults: a minimum-jerk reach scores about -1.6.
    """

    model_config = _STRICT

    best: float = -1.6
    worst: float = -5.0

    @model_validator(mode="after")
    def _ordered(self) -> SmoothnessRule:
        if self.worst >= self.best:
            raise ValueError("smoothness worst must be below best")
        return self


class RealtimeRule(BaseModel):
    """Real-time windowing and cue behaviour."""

    model_config = _STRICT

    window_s: float = Field(default=0.5, gt=0.0)
    #: A parameter must stay outside its window this long before a cue fires.
    dwell_s: float = Field(default=0.5, ge=0.0)
    #: ...and back inside (by the hysteresis margin) this long before the cue clears.
    clear_dwell_s: float = Field(default=0.25, ge=0.0)
    #: Speeds are position differences over this lag (tracker jitter / lag = speed noise).
    speed_lag_s: float = Field(default=0.5, gt=0.0)
    #: Weave amplitude/period are measured over this trailing span (> one weave period).
    weave_window_s: float = Field(default=2.0, gt=0.0)


class LevelThreshold(BaseModel):
    """Minimum score for one national skill level (职业技能等级)."""

    model_config = _STRICT

    level: int = Field(ge=1, le=5)  # 5 = 五级/初级工 ... 1 = 一级/高级技师
    name_zh: str
    name_en: str
    min_score: float = Field(ge=0.0, le=100.0)


#: Defaults: 60 passes, 80 is good, 95 excellent (domain notes); instructors edit these.
DEFAULT_LEVELS: tuple[LevelThreshold, ...] = (
    LevelThreshold(level=5, name_zh="五级/初级工", name_en="Level 5 / Junior worker",
                   min_score=60.0),
    LevelThreshold(level=4, name_zh="四级/中级工", name_en="Level 4 / Intermediate worker",
                   min_score=70.0),
    LevelThreshold(level=3, name_zh="三级/高级工", name_en="Level 3 / Senior worker",
                   min_score=80.0),
    LevelThreshold(level=2, name_zh="二级/技师", name_en="Level 2 / Technician",
                   min_score=90.0),
    LevelThreshold(level=1, name_zh="一级/高级技师", name_en="Level 1 / Senior technician",
                   min_score=95.0),
)


class Rubric(BaseModel):
    """A versioned rubric for one exercise (see ``docs/scoring.md`` for the arithmetic)."""

    model_config = _STRICT

    schema_version: Literal[1] = 1
    rubric_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)
    version: int = Field(ge=1)
    exercise: str = Field(min_length=1, max_length=100)
    title: str = ""
    process: Literal["welding", "spray"]
    metrics: dict[ParamName, MetricRule] = Field(min_length=1)
    components: ComponentWeights = ComponentWeights()
    pass_mark: float = Field(default=60.0, ge=0.0, le=100.0)
    levels: tuple[LevelThreshold, ...] = DEFAULT_LEVELS
    alignment: AlignmentRule = AlignmentRule()
    smoothness: SmoothnessRule = SmoothnessRule()
    realtime: RealtimeRule = RealtimeRule()

    @field_validator("levels")
    @classmethod
    def _levels_ordered(cls, v: tuple[LevelThreshold, ...]) -> tuple[LevelThreshold, ...]:
        ordered = sorted(v, key=lambda t: -t.level)  # 5 (lowest) first
        if len({t.level for t in v}) != len(v):
            raise ValueError("each skill level may appear once")
        for lo, hi in itertools.pairwise(ordered):
            if hi.min_score <= lo.min_score:
                raise ValueError("a higher skill level needs a higher min_score")
        return tuple(ordered)

    @model_validator(mode="after")
    def _metrics_match_process(self) -> Rubric:
        allowed = WELD_PARAMS if self.process == "welding" else SPRAY_PARAMS
        wrong = sorted(set(self.metrics) - set(allowed))
        if wrong:
            raise ValueError(f"metrics {wrong} do not belong to process {self.process!r}")
        if sum(m.weight for m in self.metrics.values()) <= 0.0:
            raise ValueError("metric weights must not all be zero")
        return self

    def metric_names(self) -> tuple[str, ...]:
        """Metric names in canonical parameter order (the order of every score table)."""
        return tuple(p for p in ALL_PARAMS if p in self.metrics)

    def level_for(self, score: float) -> LevelThreshold | None:
        """Highest level whose threshold the score reaches, or None below every threshold."""
        best: LevelThreshold | None = None
        for t in self.levels:  # ascending thresholds
            if score >= t.min_score:
                best = t
        return best

    @classmethod
    def from_json(cls, text: str | bytes) -> Rubric:
        """Parse and validate a rubric from JSON text (raises pydantic ValidationError)."""
        return cls.model_validate_json(text)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rubric:
        """Validate a rubric from an already parsed mapping (e.g. YAML)."""
        return cls.model_validate(data)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, 2-space indent, so diffs between versions are readable."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2,
                          ensure_ascii=False) + "\n"


def rubric_json_schema() -> dict[str, Any]:
    """JSON Schema of :class:`Rubric` (for editors and the instructor UI)."""
    return Rubric.model_json_schema()
