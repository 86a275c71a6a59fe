"""Synthetic tool traces for scoring tests: an expert-like and a novice-like fillet weld.

The torch pose is built from the process parameters we want (so the expected values are
known exactly): tip = joint point - ctwd * axis + aim * side, axis from work/travel angles.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: 90° T-joint along +x: base plate normal +z, web plate normal +y (torch side y > 0, z > 0).
FILLET_GEOMETRY = {
    "line_start": [0.0, 0.0, 0.0],
    "line_end": [300.0, 0.0, 0.0],
    "normal": [0.0, 0.0, 1.0],
    "second_normal": [0.0, 1.0, 0.0],
    "tip_offset": [0.0, 0.0, 150.0],
}

FILLET_RUBRIC = {
    "rubric_id": "fillet-test",
    "version": 1,
    "exercise": "fillet_t_joint",
    "process": "welding",
    "metrics": {
        "work_angle": {"ideal": 45, "min": 38, "max": 52, "weight": 2},
        "travel_angle": {"ideal": 10, "min": 5, "max": 15},
        "ctwd": {"ideal": 15, "min": 10, "max": 20},
        "travel_speed": {"ideal": 6, "min": 4, "max": 8, "weight": 2},
        "aim_offset": {"ideal": 0, "min": -2, "max": 2},
    },
}


def quat_from_z_to(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """Shortest-arc quaternions (x, y, z, w) rotating +Z onto the unit vectors ``a`` (n, 3)."""
    ez = np.array([0.0, 0.0, 1.0])
    xyz = np.cross(ez, a)
    w = 1.0 + a @ ez
    q = np.concatenate([xyz, w[:, None]], axis=1)
    out: NDArray[np.float64] = q / np.linalg.norm(q, axis=1, keepdims=True)
    return out


def fillet_poses(work_deg: NDArray[np.float64], travel_deg: NDArray[np.float64],
                 ctwd: NDArray[np.float64], along: NDArray[np.float64],
                 aim: NDArray[np.float64], tip_offset: float = 150.0) -> NDArray[np.float64]:
    """Tool poses (n, 7) for the FILLET_GEOMETRY with the given parameters per sample."""
    w = np.radians(work_deg)
    t = np.radians(travel_deg)
    # h (tip -> handle) in the plane normal to x: angle w from the base plate toward the web
    hperp = np.stack([np.zeros_like(w), np.cos(w), np.sin(w)], axis=1)
    axis = -np.cos(t)[:, None] * hperp + np.sin(t)[:, None] * np.array([1.0, 0.0, 0.0])
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    q = quat_from_z_to(axis)
    joint = np.stack([along, np.zeros_like(along), np.zeros_like(along)], axis=1)
    side = np.cross(axis, np.array([1.0, 0.0, 0.0]))
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    tip = joint - ctwd[:, None] * axis + aim[:, None] * side
    pos = tip - tip_offset * axis  # R @ (0, 0, L) = L * axis
    return np.concatenate([pos, q], axis=1)


def expert_trace(fs: float = 120.0, duration: float = 30.0, seed: int = 0
                 ) -> NDArray[np.float64]:
    """Steady expert: on-target parameters with small tracker-like jitter."""
    rng = np.random.default_rng(seed)
    n = int(duration * fs)
    tt = np.arange(n) / fs
    def j(s: float) -> NDArray[np.float64]:
        return s * rng.normal(size=n)

    return fillet_poses(45 + 1.0 * np.sin(0.5 * tt) + j(0.2), 10 + j(0.2), 15 + j(0.1),
                        10 + 6.0 * tt + j(0.05), j(0.1))


def novice_trace(fs: float = 120.0, duration: float = 40.0, seed: int = 1
                 ) -> NDArray[np.float64]:
    """Unsteady novice: drifting angles, surging speed, wandering distance and aim."""
    rng = np.random.default_rng(seed)
    n = int(duration * fs)
    tt = np.arange(n) / fs
    def j(s: float) -> NDArray[np.float64]:
        return s * rng.normal(size=n)

    speed = 6 + 4 * np.sin(0.7 * tt) + 2 * np.sin(2.3 * tt)
    along = 10 + np.cumsum(np.clip(speed, 0, None)) / fs
    return fillet_poses(45 + 12 * np.sin(0.3 * tt) + j(1.0), 10 + 9 * np.sin(0.5 * tt) + j(1.0),
                        15 + 7 * np.sin(0.4 * tt) + j(0.5), along + j(0.2),
                        3 * np.sin(0.25 * tt) + j(0.3))
