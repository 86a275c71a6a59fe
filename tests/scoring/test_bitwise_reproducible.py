"""A mark is re-computable bit for bit, whatever the arrays' flags or the chunking.

The scoring workers receive read-only arrays (``np.frombuffer``) where the controller has
writable ones; numba compiles a separate specialisation for each. With reassociating or
contracting fast-math the two gave different last bits; the kernels now keep IEEE order.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from lab_controller.exercises import load_exercise
from lab_controller.scoring import SessionScorer

EXERCISE = "fillet_t_joint_h"


def _trace(seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    ex = load_exercise(EXERCISE)
    rng = np.random.default_rng(seed)
    ref = ex.reference.tool_pose.astype(np.float64)
    poses = np.zeros((ref.shape[0], 1, 7), np.float32)
    poses[:, 0, :3] = ref[:, :3] + rng.normal(0, 1.5, (ref.shape[0], 3))
    poses[:, 0, 3:] = ref[:, 3:]
    return poses, np.ones((ref.shape[0], 1), bool)


def _score(poses: np.ndarray[Any, Any], valid: np.ndarray[Any, Any], chunk: int,
           readonly: bool) -> str:
    ex = load_exercise(EXERCISE)
    sc = SessionScorer(ex.scene["geometry"], ex.reference.tool_pose, ex.rubric, ex.rate_hz, 0,
                       reference_rate=ex.rate_hz)
    for a in range(0, poses.shape[0], chunk):
        p = poses[a:a + chunk]
        v = valid[a:a + chunk]
        if readonly:  # as a worker receives them: views of a received buffer
            p = np.frombuffer(p.tobytes(), np.float32).reshape(p.shape)
            v = np.frombuffer(v.tobytes(), np.bool_).reshape(v.shape)
            assert not p.flags.writeable
        sc.feed(10.0 + a / ex.rate_hz, 1 / ex.rate_hz, p, v)
    return json.dumps(dataclasses.asdict(sc.finish()), sort_keys=True, default=repr)


def test_read_only_and_writable_inputs_give_identical_bits() -> None:
    poses, valid = _trace(3)
    assert _score(poses, valid, 12, readonly=False) == _score(poses, valid, 12, readonly=True)


def test_chunking_does_not_change_a_bit() -> None:
    poses, valid = _trace(4)
    assert _score(poses, valid, 7, readonly=True) == _score(poses, valid, 32, readonly=False)
