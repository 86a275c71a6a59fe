"""Simulated trainees: explicit skill models and a seeded motion generator per exercise scene."""

from devices.sim.skill import (
    EXPERT,
    INTERMEDIATE,
    NOVICE,
    PRESETS,
    SkillModel,
    assign_skills,
    parse_skill_mix,
    skill_by_name,
)
from devices.sim.trainee import DEFAULT_TRACKERS, LOAD_TEST_TRACKERS, TraineeMotion

__all__ = ["DEFAULT_TRACKERS", "EXPERT", "INTERMEDIATE", "LOAD_TEST_TRACKERS", "NOVICE",
           "PRESETS", "SkillModel", "TraineeMotion", "assign_skills", "parse_skill_mix",
           "skill_by_name"]
