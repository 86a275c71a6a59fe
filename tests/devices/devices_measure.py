"""Test helpers: measure process parameters from generated poses, independently of the
generator (plain numpy from the scene geometry, as a reviewer would by hand)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from devices.sim.trainee import TraineeMotion

F64 = NDArray[np.float64]


def rotmat(q: NDArray[Any]) -> F64:
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)


def run(sim: TraineeMotion, seconds: float, rate: float = 120.0, block: int = 16
        ) -> tuple[F64, NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
    """Generate ``seconds`` of samples in blocks of ``block``; (t, poses, analog, valid)."""
    n = round(seconds * rate)
    t = np.arange(1, n + 1, dtype=np.float64) / rate
    out_p, out_a, out_v = [], [], []
    for lo in range(0, n, block):
        p, a, v = sim.generate(t[lo:lo + block])
        out_p.append(p)
        out_a.append(a)
        out_v.append(v)
    return t, np.concatenate(out_p), np.concatenate(out_a), np.concatenate(out_v)


def weld_params(scene: dict[str, Any], tool_pose: NDArray[Any]) -> dict[str, F64]:
    """Work angle, travel angle (deg), tip position along / across the line (mm)."""
    w = scene["weld"]
    n = np.asarray(w["plate_normal"], float)
    ap = np.asarray(w["approach_dir"], float)
    s = np.asarray(w["line_start_mm"], float)
    e = np.asarray(w["line_end_mm"], float)
    td = (e - s) / np.linalg.norm(e - s)
    r = rotmat(tool_pose[:, 3:])
    axis = r[:, :, 2]
    tip = np.asarray(tool_pose[:, :3], float) + r @ np.asarray(scene["tool"]["tip_offset_mm"])
    inplane = axis - np.outer(axis @ td, td)
    work = np.degrees(np.arctan2(-(inplane @ n), inplane @ ap))
    travel = np.degrees(np.arcsin(np.clip(axis @ td, -1, 1)))
    rel = tip - s
    return {"work_angle": work, "travel_angle": travel, "along": rel @ td,
            "across": rel @ np.cross(td, n), "tip": tip}
