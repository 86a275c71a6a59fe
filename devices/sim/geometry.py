"""Vectorised rotation helpers and the exercise path the simulated tool follows.

Conventions (shared with ``sim_kernels``): lengths in mm, angles in degrees at the API,
quaternions scalar-last ``[qx, qy, qz, qw]``; the tool's local +Z axis points from the
handle to the tip along the nozzle, and ``tip = tracker position + R @ tip_offset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def unit(v: F64) -> F64:
    """Normalise vectors along the last axis."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0.0, n, 1.0)


def matrix_to_quat(r: F64) -> F64:
    """Rotation matrices (..., 3, 3) → unit quaternions (..., 4), scalar last, qw >= 0.

    Shepperd's method, branch per sample chosen by the largest diagonal term so the
    result stays accurate for every rotation.
    """
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    tr = m00 + m11 + m22
    q = np.empty((*r.shape[:-2], 4), dtype=np.float64)
    c0 = tr > np.maximum(np.maximum(m00, m11), m22)
    c1 = ~c0 & (m00 >= m11) & (m00 >= m22)
    c2 = ~c0 & ~c1 & (m11 >= m22)
    c3 = ~c0 & ~c1 & ~c2
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt(np.maximum(1.0 + tr, 1e-300)) * 2.0
        q0 = np.stack([(r[..., 2, 1] - r[..., 1, 2]) / s, (r[..., 0, 2] - r[..., 2, 0]) / s,
                       (r[..., 1, 0] - r[..., 0, 1]) / s, 0.25 * s], axis=-1)
        s = np.sqrt(np.maximum(1.0 + m00 - m11 - m22, 1e-300)) * 2.0
        q1 = np.stack([0.25 * s, (r[..., 0, 1] + r[..., 1, 0]) / s,
                       (r[..., 0, 2] + r[..., 2, 0]) / s, (r[..., 2, 1] - r[..., 1, 2]) / s],
                      axis=-1)
        s = np.sqrt(np.maximum(1.0 + m11 - m00 - m22, 1e-300)) * 2.0
        q2 = np.stack([(r[..., 0, 1] + r[..., 1, 0]) / s, 0.25 * s,
                       (r[..., 1, 2] + r[..., 2, 1]) / s, (r[..., 0, 2] - r[..., 2, 0]) / s],
                      axis=-1)
        s = np.sqrt(np.maximum(1.0 + m22 - m00 - m11, 1e-300)) * 2.0
        q3 = np.stack([(r[..., 0, 2] + r[..., 2, 0]) / s, (r[..., 1, 2] + r[..., 2, 1]) / s,
                       0.25 * s, (r[..., 1, 0] - r[..., 0, 1]) / s], axis=-1)
    q[c0] = q0[c0]
    q[c1] = q1[c1]
    q[c2] = q2[c2]
    q[c3] = q3[c3]
    q = unit(q)
    return np.where(q[..., 3:4] < 0.0, -q, q)


def quat_to_matrix(q: F64) -> F64:
    """Unit quaternions (..., 4) scalar last → rotation matrices (..., 3, 3)."""
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    r = np.empty((*q.shape[:-1], 3, 3), dtype=np.float64)
    r[..., 0, 0] = 1 - 2 * (y * y + z * z)
    r[..., 0, 1] = 2 * (x * y - z * w)
    r[..., 0, 2] = 2 * (x * z + y * w)
    r[..., 1, 0] = 2 * (x * y + z * w)
    r[..., 1, 1] = 1 - 2 * (x * x + z * z)
    r[..., 1, 2] = 2 * (y * z - x * w)
    r[..., 2, 0] = 2 * (x * z - y * w)
    r[..., 2, 1] = 2 * (y * z + x * w)
    r[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return r


def frame_from_axis(z_axis: F64, x_hint: F64) -> F64:
    """Rotation matrices whose third column is ``z_axis`` and first column lies toward
    ``x_hint`` (Gram–Schmidt). Shapes (..., 3) → (..., 3, 3)."""
    z = unit(z_axis)
    x = unit(x_hint - np.sum(x_hint * z, axis=-1, keepdims=True) * z)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1)


@dataclass(frozen=True)
class Segment:
    """A straight piece of the nominal tip path; ``active`` = trigger/arc on."""

    start: F64
    end: F64
    active: bool

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.end - self.start))


@dataclass(frozen=True)
class ScenePath:
    """The nominal tip path of an exercise and the work-piece frame along it.

    ``normal``: surface normal pointing toward the trainee's side of the work;
    ``approach``: in-plane unit vector from the trainee's side toward the joint (weld) —
    the torch axis at work angle a is ``cos a * approach - sin a * normal``.
    """

    kind: str
    segments: tuple[Segment, ...]
    normal: F64
    approach: F64
    cum: F64  # cumulative length at each segment start, len = n_segments + 1

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def locate(self, s: F64) -> tuple[F64, F64, NDArray[np.bool_]]:
        """Nominal tip position, travel direction and active flag at arc lengths ``s`` (mm)."""
        s = np.clip(s, 0.0, self.length)
        idx = np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.segments) - 1)
        starts = np.stack([seg.start for seg in self.segments])
        ends = np.stack([seg.end for seg in self.segments])
        lens = np.maximum(self.cum[1:] - self.cum[:-1], 1e-12)
        dirs = (ends - starts) / lens[:, None]
        act = np.array([seg.active for seg in self.segments], dtype=bool)
        pos = starts[idx] + dirs[idx] * (s - self.cum[idx])[:, None]
        return pos, dirs[idx], act[idx]


def _vec(d: dict[str, Any], key: str) -> F64:
    v = np.asarray(d[key], dtype=np.float64)
    if v.shape != (3,):
        raise ValueError(f"scene field {key!r} must be a 3-vector, got {d[key]!r}")
    return v


def path_from_scene(scene: dict[str, Any]) -> ScenePath:
    """Build the nominal path from a scene dict (see ``docs/devices.md``, scene schema v1)."""
    kind = str(scene["kind"])
    if kind in ("weld_fillet", "weld_butt_weave"):
        w = scene["weld"]
        start, end = _vec(w, "line_start_mm"), _vec(w, "line_end_mm")
        normal = unit(_vec(w, "plate_normal"))
        approach = unit(_vec(w, "approach_dir"))
        segs: tuple[Segment, ...] = (Segment(start, end, True),)
    elif kind == "spray_panel":
        sp = scene["spray"]
        normal = unit(_vec(sp["surface"], "normal"))
        approach = -normal
        pieces: list[Segment] = []
        passes = sp["passes"]
        for i, p in enumerate(passes):
            a = np.asarray(p["start_mm"], dtype=np.float64)
            b = np.asarray(p["end_mm"], dtype=np.float64)
            if i > 0:
                pieces.append(Segment(pieces[-1].end, a, False))
            pieces.append(Segment(a, b, True))
        segs = tuple(pieces)
    else:
        raise ValueError(f"unknown exercise kind {kind!r}")
    lens = np.array([s.length for s in segs])
    cum = np.concatenate([[0.0], np.cumsum(lens)])
    return ScenePath(kind, segs, normal, approach, cum)
