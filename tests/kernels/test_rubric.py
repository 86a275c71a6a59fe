"""Rubric models: validation, canonical JSON, levels, schema."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from scoring.synth import FILLET_RUBRIC

from sim_kernels.rubric import Rubric, rubric_json_schema


def test_round_trip_and_defaults() -> None:
    r = Rubric.from_dict(FILLET_RUBRIC)
    assert r.pass_mark == 60.0
    assert r.metric_names() == ("work_angle", "travel_angle", "ctwd", "travel_speed",
                                "aim_offset")
    text = r.to_json()
    assert Rubric.from_json(text) == r
    assert text == Rubric.from_json(text).to_json()  # canonical
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert [t.level for t in r.levels] == [5, 4, 3, 2, 1]
    assert r.levels[0].name_zh == "五级/初级工" and r.levels[-1].name_zh == "一级/高级技师"


def test_levels() -> None:
    r = Rubric.from_dict(FILLET_RUBRIC)
    assert r.level_for(59.99) is None
    assert r.level_for(60.0).level == 5  # type: ignore[union-attr]
    assert r.level_for(85.0).name_zh == "三级/高级工"  # type: ignore[union-attr]
    assert r.level_for(100.0).level == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("patch", "msg"), [
    ({"metrics": {"work_angle": {"ideal": 60, "min": 38, "max": 52}}}, "min <= ideal"),
    ({"metrics": {"work_angle": {"ideal": 5, "min": 5, "max": 5}}}, "zero width"),
    ({"metrics": {"gun_speed": {"ideal": 5, "min": 1, "max": 9}}}, "do not belong"),
    ({"metrics": {"work_angle": {"ideal": 45, "min": 40, "max": 50, "weight": -1}}}, "weight"),
    ({"metrics": {"elbow": {"ideal": 0, "min": -1, "max": 1}}}, "elbow"),
    ({"metrics": {}}, "at least 1"),
    ({"pass_mark": 120}, "pass_mark"),
    ({"schema_version": 2}, "schema_version"),
    ({"rubric_id": "Bad Id"}, "rubric_id"),
    ({"surprise": 1}, "surprise"),
    ({"components": {"time_in_window": 0, "consistency": 0, "expert": 0, "smoothness": 0}},
     "all be zero"),
    ({"levels": [{"level": 5, "name_zh": "a", "name_en": "a", "min_score": 70},
                 {"level": 4, "name_zh": "b", "name_en": "b", "min_score": 65}]},
     "higher min_score"),
    ({"smoothness": {"best": -5, "worst": -1}}, "worst"),
    ({"alignment": {"full_at": 3, "zero_at": 1}}, "zero_at"),
])
def test_invalid_rubrics_rejected(patch: dict[str, object], msg: str) -> None:
    with pytest.raises(ValidationError, match=msg):
        Rubric.from_dict({**FILLET_RUBRIC, **patch})


def test_frozen_and_schema() -> None:
    r = Rubric.from_dict(FILLET_RUBRIC)
    with pytest.raises(ValidationError):
        r.pass_mark = 10
    schema = rubric_json_schema()
    assert schema["title"] == "Rubric"
    assert "metrics" in schema["properties"]
