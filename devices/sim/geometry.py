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
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    # component-wise: a numpy sum over a last axis of length 3 costs ~3x more
    n = np.sqrt(x * x + y * y + z * z)[..., None]
    return v / np.where(n > 0.0, n, 1.0)


def cross(a: F64, b: F64) -> F64:
    """Cross product along the last axis (np.cross costs ~10x more on small arrays)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    out[..., 1] = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    out[..., 2] = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return out


def matrix_to_quat(r: F64) -> F64:
    """Rotation matrices (..., 3, 3) → unit quaternions (..., 4), scalar last, qw >= 0.

    Magnitudes from the diagonal, signs from the off-diagonal differences (the branch-free
    form; its error is ~1e-8 in float64, far below the float32 the samples travel in).
    """
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    q = np.empty((*r.shape[:-2], 4), dtype=np.float64)
    q[..., 3] = 1.0 + m00 + m11 + m22
    q[..., 0] = 1.0 + m00 - m11 - m22
    q[..., 1] = 1.0 - m00 + m11 - m22
    q[..., 2] = 1.0 - m00 - m11 + m22
    np.maximum(q, 0.0, out=q)
    np.sqrt(q, out=q)
    q *= 0.5
    q[..., 0] = np.copysign(q[..., 0], r[..., 2, 1] - r[..., 1, 2])
    q[..., 1] = np.copysign(q[..., 1], r[..., 0, 2] - r[..., 2, 0])
    q[..., 2] = np.copysign(q[..., 2], r[..., 1, 0] - r[..., 0, 1])
    q0, q1, q2, q3 = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    q /= np.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)[..., None]
    return q


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
    dot = x_hint[..., 0] * z[..., 0] + x_hint[..., 1] * z[..., 1] + x_hint[..., 2] * z[..., 2]
    x = unit(x_hint - dot[..., None] * z)
    out = np.empty((*z.shape, 3))
    out[..., 0] = x
    out[..., 1] = cross(z, x)
    out[..., 2] = z
    return out


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
    starts: F64  # (S, 3)
    dirs: F64  # (S, 3) unit travel direction per segment
    act: NDArray[np.bool_]  # (S,)

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def locate(self, s: F64) -> tuple[F64, F64, NDArray[np.bool_]]:
        """Nominal tip position, travel direction and active flag at arc lengths ``s`` (mm)."""
        s = s.clip(0.0, self.length)
        if len(self.segments) == 1:
            idx = np.zeros(s.shape[0], dtype=np.intp)
        else:
            idx = np.searchsorted(self.cum, s, side="right") - 1
            np.clip(idx, 0, len(self.segments) - 1, out=idx)
        pos = self.starts[idx] + self.dirs[idx] * (s - self.cum[idx])[:, None]
        return pos, self.dirs[idx], self.act[idx]


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
    starts = np.stack([seg.start for seg in segs])
    dirs = np.stack([seg.end - seg.start for seg in segs]) / np.maximum(lens, 1e-12)[:, None]
    act = np.array([seg.active for seg in segs], dtype=bool)
    return ScenePath(kind, segs, normal, approach, cum, starts, dirs, act)
