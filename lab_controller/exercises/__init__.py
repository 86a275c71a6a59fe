"""The exercise library: scene geometry, expert reference trace and default rubric per exercise.

Data files live in ``data/<exercise_id>/`` (``exercise.json``, ``reference.npz``,
``rubric.json``) and are regenerated deterministically by ``scripts/make_exercises.py``.
The controller scores against an :class:`Exercise`; rigs only ever see ``scene`` (sent in
START), so a rig needs no access to this library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sim_kernels.process import tool_frames
from sim_kernels.rubric import Rubric

DATA_DIR = Path(__file__).resolve().parent / "data"
KINDS = ("weld_fillet", "weld_butt_weave", "spray_panel")


class ExerciseNotFound(KeyError):
    """No exercise with that id in the library."""


@dataclass(frozen=True)
class Reference:
    """The expert reference trace: tool tracker pose per sample at the exercise's rate."""

    t: NDArray[np.float64]  # (n,) s from the start
    tool_pose: NDArray[np.float32]  # (n, 7) mm + scalar-last quaternion
    trigger: NDArray[np.float32]  # (n,) 1 while the arc / spray is on

    @property
    def n(self) -> int:
        return int(self.t.shape[0])

    def tip(self, tip_offset_mm: NDArray[np.float64] | list[float]) -> NDArray[np.float64]:
        """Tool-tip positions (n, 3): tracker position + R @ tip_offset (the kernels' own
        arithmetic, `sim_kernels.process.tool_frames`)."""
        tip, _axis = tool_frames(self.tool_pose[:, :3], self.tool_pose[:, 3:], tip_offset_mm)
        return tip


@dataclass(frozen=True)
class Exercise:
    """One exercise of the library (see the module docstring)."""

    id: str
    title: str
    kind: str
    scene: dict[str, Any] = field(repr=False)
    reference: Reference = field(repr=False)
    rubric: Rubric = field(repr=False)
    nominal_duration_s: float = 0.0
    rate_hz: float = 120.0

    @property
    def tip_offset_mm(self) -> list[float]:
        return [float(v) for v in self.scene["tool"]["tip_offset_mm"]]

    @property
    def process(self) -> str:
        """``welding`` or ``spray`` (the rubric's process)."""
        return self.rubric.process


def exercise_ids(data_dir: Path = DATA_DIR) -> list[str]:
    """Ids of every exercise in the library, sorted."""
    return sorted(p.parent.name for p in data_dir.glob("*/exercise.json"))


def load_exercise_from(folder: Path) -> Exercise:
    """Load one exercise folder (validates the rubric with ``sim_kernels.rubric``)."""
    meta = json.loads((folder / "exercise.json").read_text(encoding="utf-8"))
    rubric = Rubric.from_json((folder / meta["rubric"]["file"]).read_text(encoding="utf-8"))
    with np.load(folder / meta["reference"]["file"], allow_pickle=False) as z:
        ref = Reference(t=np.asarray(z["t"], np.float64),
                        tool_pose=np.asarray(z["tool_pose"], np.float32),
                        trigger=np.asarray(z["trigger"], np.float32))
    if meta["kind"] not in KINDS:
        raise ValueError(f"{folder}: unknown exercise kind {meta['kind']!r}")
    if rubric.exercise != meta["exercise_id"]:
        raise ValueError(f"{folder}: rubric is for {rubric.exercise!r}")
    for arr in (ref.t, ref.tool_pose, ref.trigger):
        arr.flags.writeable = False
    return Exercise(id=meta["exercise_id"], title=meta["title"], kind=meta["kind"],
                    scene=meta["scene"], reference=ref, rubric=rubric,
                    nominal_duration_s=float(meta["nominal_duration_s"]),
                    rate_hz=float(meta["rate_hz"]))


@lru_cache(maxsize=32)
def load_exercise(exercise_id: str) -> Exercise:
    """An exercise of the packaged library by id (cached; arrays are read-only)."""
    folder = DATA_DIR / exercise_id
    if not (folder / "exercise.json").is_file():
        raise ExerciseNotFound(f"unknown exercise {exercise_id!r}; known: {exercise_ids()}")
    return load_exercise_from(folder)


def scene_for(exercise_id: str) -> dict[str, Any]:
    """A deep copy of the exercise's scene, ready to travel in a START message."""
    scene: dict[str, Any] = json.loads(json.dumps(load_exercise(exercise_id).scene))
    return scene


__all__ = ["DATA_DIR", "Exercise", "ExerciseNotFound", "Reference", "exercise_ids",
           "load_exercise", "load_exercise_from", "scene_for"]
