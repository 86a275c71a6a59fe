"""Explicit skill models of simulated trainees (expert, intermediate, novice, custom).

Every number a trainee's motion depends on is a field here, so a test can check that a
generated trace has the statistics its model declares, and an instructor can read what
"novice" means. Deviations are built from four independent parts per channel:

* **bias**: constant for a session, magnitude drawn around the declared value, random sign;
* **drift**: slow Ornstein–Uhlenbeck process (std, time constant ``drift_tau_s``);
* **noise**: hand unsteadiness, OU process with short time constant ``noise_tau_s``;
* **tremor**: narrow-band physiological tremor at ``tremor_hz`` (8–12 Hz band).

Cues scale the bias and drift of the cued channel by ``1 - k(t)``; ``k`` rises toward
``correction_gain`` with ``correction_tau_s`` after ``reaction_s`` and relaxes back to 0 with
``relapse_tau_s`` (attention fades). A novice reacts later, less and forgets sooner.

Default magnitudes: hand-held tool tremor is about 0.05–0.2 mm RMS at 8–12 Hz; commercial
VR trackers show about 0.1 mm jitter and occasional occlusion dropouts of 50–300 ms; the
windows they are compared with are the domain notes' defaults (work angle ±5–10°, CTWD
10–20 mm, travel speed 4–8 mm/s, gun distance 150–250 mm).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SkillName = Literal["expert", "intermediate", "novice", "custom"]


class SkillModel(BaseModel):
    """Parameters of one simulated trainee (units in each field's description)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    # hand unsteadiness (OU, short correlation)
    angle_noise_deg: float = Field(2.0, ge=0, description="std of angle noise per axis, deg")
    distance_noise_mm: float = Field(1.0, ge=0, description="std of CTWD / gun-distance noise")
    aim_noise_mm: float = Field(0.5, ge=0, description="std of lateral aim noise, mm")
    speed_cv: float = Field(0.1, ge=0, le=0.6, description="std of travel speed / mean speed")
    weave_cv: float = Field(0.05, ge=0, le=0.6, description="std of weave amplitude & period, rel.")
    noise_tau_s: float = Field(0.3, gt=0, description="correlation time of hand noise, s")
    # session bias (|bias| drawn uniformly in [0.5, 1.5] x value, random sign)
    angle_bias_deg: float = Field(0.0, ge=0)
    distance_bias_mm: float = Field(0.0, ge=0)
    aim_bias_mm: float = Field(0.0, ge=0)
    speed_bias: float = Field(0.0, ge=0, le=0.8, description="relative speed error")
    weave_bias: float = Field(0.0, ge=0, le=0.8, description="relative weave amplitude error")
    # slow drift (OU, long correlation)
    angle_drift_deg: float = Field(0.0, ge=0)
    distance_drift_mm: float = Field(0.0, ge=0)
    aim_drift_mm: float = Field(0.0, ge=0)
    speed_drift: float = Field(0.0, ge=0, le=0.5, description="relative")
    drift_tau_s: float = Field(6.0, gt=0)
    # physiological tremor
    tremor_mm: float = Field(0.08, ge=0, description="RMS tremor displacement per axis, mm")
    tremor_deg: float = Field(0.05, ge=0, description="RMS angular tremor per axis, deg")
    tremor_hz: float = Field(10.0, ge=8.0, le=12.0)
    # hesitations (travel stops)
    hesitation_per_min: float = Field(0.0, ge=0)
    hesitation_s: float = Field(0.8, gt=0, description="mean pause length (exponential)")
    # tracking quality (the tracker, not the trainee, but it varies by rig and is simulated here)
    dropout_per_min: float = Field(0.5, ge=0, description="tracking-loss events per tracker")
    dropout_s: float = Field(0.12, gt=0, description="mean dropout length (exponential), s")
    tracking_noise_mm: float = Field(0.05, ge=0, description="white position jitter, mm")
    rate_jitter: float = Field(0.002, ge=0, le=0.05, description="relative std of block period")
    clock_drift_ppm: float = Field(20.0, description="rig clock rate error, ppm")
    # reaction to cues
    reaction_s: float = Field(0.5, ge=0.15, description="delay before a cue takes effect, s")
    correction_gain: float = Field(0.8, ge=0, le=1, description="fraction of bias removed")
    correction_tau_s: float = Field(0.6, gt=0)
    relapse_tau_s: float = Field(20.0, gt=0, description="how long a correction is kept, s")

    def expected_angle_std_deg(self) -> float:
        """Within-session std of a tool angle (noise, drift, tremor; bias is constant)."""
        return math.sqrt(self.angle_noise_deg**2 + self.angle_drift_deg**2 + self.tremor_deg**2)

    def expected_dropout_fraction(self) -> float:
        """Long-run fraction of samples a tracker is lost (renewal process)."""
        busy = self.dropout_per_min / 60.0 * self.dropout_s
        return busy / (1.0 + busy)

    def expected_pause_fraction(self) -> float:
        """Long-run fraction of active time spent in hesitation pauses."""
        busy = self.hesitation_per_min / 60.0 * self.hesitation_s
        return busy / (1.0 + busy)


EXPERT = SkillModel(
    name="expert",
    angle_noise_deg=1.2, distance_noise_mm=0.6, aim_noise_mm=0.25, speed_cv=0.05, weave_cv=0.04,
    angle_bias_deg=0.8, distance_bias_mm=0.5, aim_bias_mm=0.15, speed_bias=0.03, weave_bias=0.03,
    angle_drift_deg=0.6, distance_drift_mm=0.4, aim_drift_mm=0.15, speed_drift=0.02,
    tremor_mm=0.05, tremor_deg=0.03, tremor_hz=10.0,
    hesitation_per_min=0.0,
    reaction_s=0.35, correction_gain=0.9, correction_tau_s=0.4, relapse_tau_s=60.0,
)

INTERMEDIATE = SkillModel(
    name="intermediate",
    angle_noise_deg=3.0, distance_noise_mm=1.6, aim_noise_mm=0.7, speed_cv=0.12, weave_cv=0.12,
    angle_bias_deg=4.0, distance_bias_mm=2.5, aim_bias_mm=0.7, speed_bias=0.12, weave_bias=0.15,
    angle_drift_deg=2.0, distance_drift_mm=1.2, aim_drift_mm=0.5, speed_drift=0.06,
    tremor_mm=0.1, tremor_deg=0.06, tremor_hz=9.5,
    hesitation_per_min=1.5, hesitation_s=0.6,
    reaction_s=0.7, correction_gain=0.75, correction_tau_s=0.8, relapse_tau_s=25.0,
)

NOVICE = SkillModel(
    name="novice",
    angle_noise_deg=5.5, distance_noise_mm=3.0, aim_noise_mm=1.4, speed_cv=0.25, weave_cv=0.3,
    angle_bias_deg=9.0, distance_bias_mm=5.0, aim_bias_mm=1.6, speed_bias=0.3, weave_bias=0.35,
    angle_drift_deg=4.0, distance_drift_mm=2.5, aim_drift_mm=1.0, speed_drift=0.12,
    tremor_mm=0.18, tremor_deg=0.1, tremor_hz=9.0,
    hesitation_per_min=5.0, hesitation_s=1.0,
    reaction_s=1.3, correction_gain=0.6, correction_tau_s=1.5, relapse_tau_s=10.0,
)

PRESETS: dict[str, SkillModel] = {m.name: m for m in (EXPERT, INTERMEDIATE, NOVICE)}


def skill_by_name(name: str, **overrides: float) -> SkillModel:
    """A preset by name (``expert``, ``intermediate``, ``novice``) with optional overrides;
    ``custom`` starts from the field defaults."""
    if name == "custom":
        return SkillModel.model_validate({"name": "custom", **overrides})
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown skill {name!r}; choose from {sorted(PRESETS)} or custom") from None
    return base.model_copy(update=overrides) if overrides else base


def parse_skill_mix(text: str) -> list[tuple[str, float]]:
    """Parse ``expert:0.2,intermediate:0.5,novice:0.3`` into normalised (name, share) pairs."""
    pairs: list[tuple[str, float]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, share = part.partition(":")
        name = name.strip()
        if name not in PRESETS and name != "custom":
            raise ValueError(f"unknown skill {name!r} in mix {text!r}")
        try:
            value = float(share) if share else 1.0
        except ValueError:
            raise ValueError(f"bad share {share!r} in mix {text!r}") from None
        if value < 0:
            raise ValueError(f"negative share in mix {text!r}")
        pairs.append((name, value))
    total = sum(v for _, v in pairs)
    if not pairs or total <= 0:
        raise ValueError(f"empty skill mix {text!r}")
    return [(n, v / total) for n, v in pairs]


def assign_skills(count: int, mix: list[tuple[str, float]]) -> list[str]:
    """Deterministic assignment of ``count`` rigs to skills by largest remainder."""
    raw = [(n, share * count) for n, share in mix]
    base = [(n, math.floor(x)) for n, x in raw]
    left = count - sum(k for _, k in base)
    order = sorted(range(len(raw)), key=lambda i: -(raw[i][1] - base[i][1]))
    counts = [k for _, k in base]
    for i in order[:left]:
        counts[i] += 1
    out: list[str] = []
    for (n, _), k in zip(base, counts, strict=True):
        out.extend([n] * k)
    return out
