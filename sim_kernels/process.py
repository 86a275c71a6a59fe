"""Process parameters from tool poses and exercise geometry (welding, spray painting).

Conventions (all callers and docs rely on them):

* Poses are position (mm, lab frame) plus unit quaternion ``(qx, qy, qz, qw)`` (scalar
  last) rotating tool-frame vectors into the lab frame.
* The tool's local **+Z axis is the torch/gun axis, pointing from the handle to the tip**
  (along the nozzle, toward the work). ``axis = R @ (0, 0, 1)``.
* The tip (contact tip / gun nozzle) is ``tip = position + R @ tip_offset`` (mm, tool frame).

Welding geometry: weld line from ``line_start`` to ``line_end`` (travel runs start → end,
``u`` = unit travel direction); ``normal`` = base plate normal pointing to the torch side;
optional ``second_normal`` = the other plate of a fillet (T) joint, pointing to the torch side.
``n`` = normal made perpendicular to ``u``; ``b`` = second normal made perpendicular to ``u``
and ``n`` (fillet) or ``u × n`` (right of travel; butt/lap), ``h = -axis`` (tip → handle):

* ``work_angle = atan2(h·n, h·b)`` in degrees: the torch's angle from the base plate, in the
  plane normal to the weld line; 90 = perpendicular to the base plate; for a 90° T-joint
  45 = bisecting the joint, 0 = lying on the base plate, 90 = lying on the web.
* ``travel_angle = asin(axis·u)`` in degrees: > 0 push (tip ahead of the handle), < 0 drag.
* ``ctwd`` in mm: distance from the tip, along the torch axis, to where the axis passes
  closest to the weld line (the tip-to-joint distance along the torch; exact when aimed at
  the joint, whatever the travel angle). A torch parallel to the line falls back to the
  along-axis component of the tip's offset from the line.
* ``aim_offset = (tip - line_start)·e`` in mm with ``e = unit(axis × u)``: the signed
  distance between the torch axis and the weld line (sideways, as seen down the torch);
  + = right of travel for a torch pointing down.
* ``along = (tip - line_start)·u`` in mm (progress along the joint; the speed source).
* ``travel_speed`` = change of ``along`` over a lag (mm/s), see :func:`lagged_speed`.
* Weave: over a trailing window the aim offset minus its least-squares line;
  ``amplitude = sqrt(2)·std`` (mm; exact for a sine) and ``period`` = 2 × mean time between
  Schmitt-trigger zero crossings (thresholds ±amplitude/4; s; NaN if < 2 crossings or the
  amplitude is below ``min_amplitude``).

Spray geometry: a plane through ``point`` with ``normal`` pointing to the painter,
``pass_direction`` in the plane (strokes run along it), ``e_cross = normal × pass_direction``:

* ``gun_distance = (tip - point)·normal`` (mm, perpendicular to the surface).
* ``gun_angle = asin(-axis·normal)`` (deg; 90 = square on to the surface).
* ``gun_speed`` = tip displacement parallel to the surface over a lag (mm/s).
* ``pass_overlap = 100·(1 - |c_k+1 - c_k| / fan_width)`` (%) for consecutive passes ``k``,
  ``c`` = mean ``(tip - point)·e_cross`` of a pass; a pass is a run of samples whose speed along
  ``pass_direction`` keeps one sign above ``min_pass_speed`` for at least ``min_pass_length``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sim_kernels._config import ijit, jit
from sim_kernels._validate import as_finite, check_rate

_RAD2DEG = 180.0 / math.pi


# --------------------------------------------------------------------------------------------
# geometry (plain dataclasses; parsed from dicts the exercise library stores)


def _vec3(v: Any, name: str) -> NDArray[np.float64]:
    a = as_finite(v, name, 1)
    if a.shape != (3,):
        raise ValueError(f"{name} must be 3 numbers, got shape {a.shape}")
    return a


def _req(g: dict[str, Any], *keys: str) -> Any:
    """The first of ``keys`` present in the geometry dict, else a clear ValueError."""
    for k in keys:
        if k in g and g[k] is not None:
            return g[k]
    raise ValueError(f"geometry needs {' or '.join(keys)}")


def _unit(v: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    nrm = float(np.linalg.norm(v))
    if nrm < 1e-9:
        raise ValueError(f"{name} must not be a zero vector")
    out: NDArray[np.float64] = v / nrm
    return out


@dataclass(frozen=True)
class WeldGeometry:
    """Weld joint: line (mm), plate normal(s) toward the torch side, tool tip offset (mm)."""

    line_start: NDArray[np.float64]
    line_end: NDArray[np.float64]
    normal: NDArray[np.float64]
    second_normal: NDArray[np.float64] | None
    tip_offset: NDArray[np.float64]

    @classmethod
    def from_dict(cls, g: dict[str, Any]) -> WeldGeometry:
        """Keys: line_start, line_end, normal (or plate_normal), optional second_normal,
        optional tip_offset (default 0,0,0)."""
        start = _vec3(_req(g, "line_start"), "line_start")
        end = _vec3(_req(g, "line_end"), "line_end")
        _unit(end - start, "line_end - line_start")
        normal = _unit(_vec3(_req(g, "normal", "plate_normal"), "normal"), "normal")
        sec = g.get("second_normal")
        second = None if sec is None else _unit(_vec3(sec, "second_normal"), "second_normal")
        tip = _vec3(g.get("tip_offset", (0.0, 0.0, 0.0)), "tip_offset")
        return cls(start, end, normal, second, tip)

    def frame(self) -> NDArray[np.float64]:
        """Rows: travel direction u, plate normal n (⊥ u), in-plane reference b (see module)."""
        u = _unit(self.line_end - self.line_start, "weld line")
        n = _unit(self.normal - (self.normal @ u) * u, "normal (parallel to the weld line?)")
        if self.second_normal is not None:
            s = self.second_normal
            b = _unit(s - (s @ u) * u - (s @ n) * n, "second_normal (parallel to normal?)")
        else:
            b = np.cross(u, n)
        return np.ascontiguousarray(np.stack([u, n, b]))


@dataclass(frozen=True)
class SprayGeometry:
    """Flat panel: a point and normal (toward the painter), stroke direction, fan width."""

    point: NDArray[np.float64]
    normal: NDArray[np.float64]
    pass_direction: NDArray[np.float64]
    fan_width_mm: float
    tip_offset: NDArray[np.float64]
    min_pass_speed: float = 50.0  # mm/s: slower motion is a turn-around, not a stroke
    min_pass_length: float = 100.0  # mm: shorter runs are not passes

    @classmethod
    def from_dict(cls, g: dict[str, Any]) -> SprayGeometry:
        """Keys: point, normal, pass_direction, fan_width_mm, optional tip_offset,
        min_pass_speed (mm/s), min_pass_length (mm)."""
        point = _vec3(_req(g, "point"), "point")
        normal = _unit(_vec3(_req(g, "normal"), "normal"), "normal")
        pd = _vec3(_req(g, "pass_direction"), "pass_direction")
        pd = _unit(pd - (pd @ normal) * normal, "pass_direction (parallel to normal?)")
        fan = float(_req(g, "fan_width_mm"))
        if not (math.isfinite(fan) and fan > 0):
            raise ValueError("fan_width_mm must be > 0")
        tip = _vec3(g.get("tip_offset", (0.0, 0.0, 0.0)), "tip_offset")
        return cls(point, normal, pd, fan, tip, float(g.get("min_pass_speed", 50.0)),
                   float(g.get("min_pass_length", 100.0)))

    def frame(self) -> NDArray[np.float64]:
        """Rows: normal, pass direction, cross direction (normal × pass direction)."""
        return np.ascontiguousarray(
            np.stack([self.normal, self.pass_direction, np.cross(self.normal, self.pass_direction)]))


# --------------------------------------------------------------------------------------------
# kernels


@ijit
def tip_and_axis(px: float, py: float, pz: float, qx: float, qy: float, qz: float, qw: float,
                 ox: float, oy: float, oz: float
                 ) -> tuple[float, float, float, float, float, float]:
    """Tip ``p + R @ o`` and tool +Z axis (R's third column) of a pose with a unit quaternion
    (scalar last). The one place of this arithmetic: the batch and the streaming paths inline
    it, so both give the same bits."""
    r00 = 1.0 - 2.0 * (qy * qy + qz * qz)
    r01 = 2.0 * (qx * qy - qz * qw)
    r02 = 2.0 * (qx * qz + qy * qw)
    r10 = 2.0 * (qx * qy + qz * qw)
    r11 = 1.0 - 2.0 * (qx * qx + qz * qz)
    r12 = 2.0 * (qy * qz - qx * qw)
    r20 = 2.0 * (qx * qz - qy * qw)
    r21 = 2.0 * (qy * qz + qx * qw)
    r22 = 1.0 - 2.0 * (qx * qx + qy * qy)
    return (px + r00 * ox + r01 * oy + r02 * oz, py + r10 * ox + r11 * oy + r12 * oz,
            pz + r20 * ox + r21 * oy + r22 * oz, r02, r12, r22)


@jit
def _tool_frames(pos: NDArray[np.float64], quat: NDArray[np.float64],
                 tip_offset: NDArray[np.float64], tip: NDArray[np.float64],
                 axis: NDArray[np.float64]) -> int:
    """Tip position and unit tool +Z axis per sample. Returns the index of the first
    quaternion with (near) zero norm, or -1."""
    ox, oy, oz = tip_offset[0], tip_offset[1], tip_offset[2]
    for i in range(pos.shape[0]):
        qx, qy, qz, qw = quat[i, 0], quat[i, 1], quat[i, 2], quat[i, 3]
        nrm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
        if nrm < 1e-6:
            return i
        tx, ty, tz, ax, ay, az = tip_and_axis(pos[i, 0], pos[i, 1], pos[i, 2], qx / nrm,
                                              qy / nrm, qz / nrm, qw / nrm, ox, oy, oz)
        tip[i, 0] = tx
        tip[i, 1] = ty
        tip[i, 2] = tz
        axis[i, 0] = ax
        axis[i, 1] = ay
        axis[i, 2] = az
    return -1


@ijit
def _weld_row(tx: float, ty: float, tz: float, ax: float, ay: float, az: float,
              origin: NDArray[np.float64], frame: NDArray[np.float64]
              ) -> tuple[float, float, float, float, float]:
    """work_angle, travel_angle, ctwd, aim_offset, along of one tip/axis (module doc)."""
    ux, uy, uz = frame[0, 0], frame[0, 1], frame[0, 2]
    nx, ny, nz = frame[1, 0], frame[1, 1], frame[1, 2]
    bx, by, bz = frame[2, 0], frame[2, 1], frame[2, 2]
    rx = tx - origin[0]
    ry = ty - origin[1]
    rz = tz - origin[2]
    along = rx * ux + ry * uy + rz * uz
    hn = -(ax * nx + ay * ny + az * nz)
    hb = -(ax * bx + ay * by + az * bz)
    work = math.atan2(hn, hb) * _RAD2DEG
    au = min(1.0, max(-1.0, ax * ux + ay * uy + az * uz))
    travel = math.asin(au) * _RAD2DEG
    ra = rx * ax + ry * ay + rz * az
    s2 = 1.0 - au * au
    # along the axis to the closest approach of the torch axis and the weld line; a torch
    # parallel to the line falls back to the along-axis offset from the line's nearest point
    ctwd = (au * along - ra) / s2 if s2 > 1e-12 else -(ra - along * au)
    # e = unit(axis × u); if the torch lies along the line, fall back to b
    ex = ay * uz - az * uy
    ey = az * ux - ax * uz
    ez = ax * uy - ay * ux
    en = math.sqrt(ex * ex + ey * ey + ez * ez)
    if en < 1e-9:
        ex, ey, ez, en = bx, by, bz, 1.0
    aim = (rx * ex + ry * ey + rz * ez) / en
    return work, travel, ctwd, aim, along


@ijit
def _spray_row(tx: float, ty: float, tz: float, ax: float, ay: float, az: float,
               origin: NDArray[np.float64], frame: NDArray[np.float64]
               ) -> tuple[float, float, float, float]:
    """gun_distance, gun_angle, along, cross of one tip/axis (module doc)."""
    nx, ny, nz = frame[0, 0], frame[0, 1], frame[0, 2]
    rx = tx - origin[0]
    ry = ty - origin[1]
    rz = tz - origin[2]
    an = -(ax * nx + ay * ny + az * nz)
    dist = rx * nx + ry * ny + rz * nz
    angle = math.asin(min(1.0, max(-1.0, an))) * _RAD2DEG
    along = rx * frame[1, 0] + ry * frame[1, 1] + rz * frame[1, 2]
    cross = rx * frame[2, 0] + ry * frame[2, 1] + rz * frame[2, 2]
    return dist, angle, along, cross


@jit
def _weld_kernel(tip: NDArray[np.float64], axis: NDArray[np.float64],
                 origin: NDArray[np.float64], frame: NDArray[np.float64],
                 out: NDArray[np.float64]) -> None:
    """Columns of ``out``: work_angle, travel_angle, ctwd, aim_offset, along (see module)."""
    for i in range(tip.shape[0]):
        w, t, c, a, s = _weld_row(tip[i, 0], tip[i, 1], tip[i, 2], axis[i, 0], axis[i, 1],
                                  axis[i, 2], origin, frame)
        out[i, 0] = w
        out[i, 1] = t
        out[i, 2] = c
        out[i, 3] = a
        out[i, 4] = s


@jit
def _spray_kernel(tip: NDArray[np.float64], axis: NDArray[np.float64],
                  origin: NDArray[np.float64], frame: NDArray[np.float64],
                  out: NDArray[np.float64]) -> None:
    """Columns of ``out``: gun_distance, gun_angle, along (pass direction), cross."""
    for i in range(tip.shape[0]):
        d, g, a, c = _spray_row(tip[i, 0], tip[i, 1], tip[i, 2], axis[i, 0], axis[i, 1],
                                axis[i, 2], origin, frame)
        out[i, 0] = d
        out[i, 1] = g
        out[i, 2] = a
        out[i, 3] = c


@jit
def _lagged_speed(coords: NDArray[np.float64], dt: float, lag: int,
                  out: NDArray[np.float64]) -> None:
    """Speed of the ``coords`` rows (n, k): |c[i] - c[i - L]| / (L dt), L = min(lag, i);
    sample 0 copies sample 1 (0 for a single sample). For k == 1 the sign is kept."""
    n = coords.shape[0]
    k = coords.shape[1]
    for i in range(1, n):
        L = min(lag, i)
        if k == 1:
            out[i] = (coords[i, 0] - coords[i - L, 0]) / (L * dt)
        else:
            s = 0.0
            for c in range(k):
                t = coords[i, c] - coords[i - L, c]
                s += t * t
            out[i] = math.sqrt(s) / (L * dt)
    if n > 1:
        out[0] = out[1]
    elif n == 1:
        out[0] = 0.0


@jit
def _weave_one(y: NDArray[np.float64], dt: float, min_amp: float) -> tuple[float, float]:
    """Weave amplitude (mm) and period (s) of one window of lateral offsets (module doc)."""
    n = y.shape[0]
    if n < 3:
        return 0.0, np.nan
    # least-squares line over sample index
    tm = 0.5 * (n - 1)
    ym = 0.0
    for i in range(n):
        ym += y[i]
    ym /= n
    sxy = 0.0
    sxx = 0.0
    for i in range(n):
        sxy += (i - tm) * (y[i] - ym)
        sxx += (i - tm) * (i - tm)
    slope = sxy / sxx
    var = 0.0
    for i in range(n):
        r = y[i] - ym - slope * (i - tm)
        var += r * r
    amp = math.sqrt(2.0 * var / n)
    if amp < min_amp:
        return amp, np.nan
    h = 0.25 * amp
    state = 0
    first = -1
    last = -1
    count = 0
    for i in range(n):
        r = y[i] - ym - slope * (i - tm)
        s = 1 if r >= h else (-1 if r <= -h else 0)
        if s != 0 and s != state:
            if state != 0:
                if first < 0:
                    first = i
                last = i
                count += 1
            state = s
    if count < 2:
        return amp, np.nan
    return amp, 2.0 * (last - first) * dt / (count - 1)


@jit
def _weave_windows(y: NDArray[np.float64], dt: float, win: int, ends: NDArray[np.int64],
                   min_amp: float, out: NDArray[np.float64]) -> None:
    """Weave amplitude/period over ``y[max(0, e - win):e]`` for each end index ``e``."""
    for q in range(ends.shape[0]):
        e = ends[q]
        s = max(0, e - win)
        a, p = _weave_one(y[s:e], dt, min_amp)
        out[q, 0] = a
        out[q, 1] = p


@jit
def _passes(along: NDArray[np.float64], cross: NDArray[np.float64], dt: float, lag: int,
            min_speed: float, min_len: float, out: NDArray[np.float64]) -> int:
    """Find passes (module doc); ``out[k] = (start, end, mean cross)``. Returns the count."""
    n = along.shape[0]
    count = 0
    i = 0
    while i < n:
        j0 = max(0, i - lag)
        v = (along[i] - along[j0]) / (max(1, i - j0) * dt) if i > 0 else 0.0
        sgn = 1 if v >= min_speed else (-1 if v <= -min_speed else 0)
        if sgn == 0:
            i += 1
            continue
        start = i
        while i < n:
            j0 = max(0, i - lag)
            v = (along[i] - along[j0]) / (max(1, i - j0) * dt) if i > 0 else 0.0
            if v * sgn < min_speed:
                break
            i += 1
        end = i  # exclusive
        if abs(along[end - 1] - along[start]) >= min_len:
            s = 0.0
            for k in range(start, end):
                s += cross[k]
            out[count, 0] = start
            out[count, 1] = end
            out[count, 2] = s / (end - start)
            count += 1
    return count


# --------------------------------------------------------------------------------------------
# public wrappers


def _poses(positions: object, quats: object) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    pos = as_finite(positions, "positions", 2)
    q = as_finite(quats, "quaternions", 2)
    if pos.shape[1] != 3 or q.shape[1] != 4 or pos.shape[0] != q.shape[0]:
        raise ValueError(f"need positions (n, 3) and quaternions (n, 4), got {pos.shape}, "
                         f"{q.shape}")
    if pos.shape[0] == 0:
        raise ValueError("no samples")
    return pos, q


def tool_frames(positions: object, quats: object, tip_offset: object = (0.0, 0.0, 0.0)
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Tip positions (n, 3) mm and unit torch axes (n, 3) from poses (see module doc)."""
    pos, q = _poses(positions, quats)
    off = _vec3(tip_offset, "tip_offset")
    tip = np.empty_like(pos)
    axis = np.empty_like(pos)
    bad = _tool_frames(pos, q, off, tip, axis)
    if bad >= 0:
        raise ValueError(f"quaternion {bad} has zero norm")
    return tip, axis


def weld_sample_params(positions: object, quats: object, geometry: WeldGeometry
                       ) -> NDArray[np.float64]:
    """Per sample (n, 5): work_angle deg, travel_angle deg, ctwd mm, aim_offset mm, along mm."""
    tip, axis = tool_frames(positions, quats, geometry.tip_offset)
    out = np.empty((tip.shape[0], 5))
    _weld_kernel(tip, axis, geometry.line_start, geometry.frame(), out)
    return out


def spray_sample_params(positions: object, quats: object, geometry: SprayGeometry
                        ) -> NDArray[np.float64]:
    """Per sample (n, 4): gun_distance mm, gun_angle deg, along mm, cross mm."""
    tip, axis = tool_frames(positions, quats, geometry.tip_offset)
    out = np.empty((tip.shape[0], 4))
    _spray_kernel(tip, axis, geometry.point, geometry.frame(), out)
    return out


def lagged_speed(coords: object, fs: float, lag_s: float) -> NDArray[np.float64]:
    """Speed (units/s) over a lag of ``round(lag_s * fs)`` samples (at least 1): signed for a
    1-D coordinate, the displacement norm for (n, k). Jitter / lag is the speed noise."""
    c = as_finite(coords, "coords", (1, 2))
    if c.ndim == 1:
        c = c.reshape(-1, 1)
    f = check_rate(fs)
    lag = max(1, round(lag_s * f))
    out = np.empty(c.shape[0])
    _lagged_speed(c, 1.0 / f, lag, out)
    return out


def weave(lateral: object, fs: float, window_s: float, ends: object | None = None,
          min_amplitude: float = 0.3) -> NDArray[np.float64]:
    """Weave (amplitude mm, period s) over the trailing ``window_s`` before each end index
    (default: one window ending at the last sample). ``min_amplitude`` mm: below it the
    period is NaN (no weave; 0.3 mm is above typical tracker jitter)."""
    y = as_finite(lateral, "lateral", 1)
    f = check_rate(fs)
    win = max(3, round(window_s * f))
    e = (np.array([y.shape[0]], np.int64) if ends is None
         else np.ascontiguousarray(np.asarray(ends, dtype=np.int64)))
    if e.ndim != 1 or (e.size and (e.min() < 1 or e.max() > y.shape[0])):
        raise ValueError("ends must be indices in 1..n")
    out = np.empty((e.shape[0], 2))
    _weave_windows(y, 1.0 / f, win, e, float(min_amplitude), out)
    return out


def spray_passes(along: object, cross: object, fs: float, geometry: SprayGeometry,
                 lag_s: float = 0.1) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Passes ``(k, 3)`` rows (start, end exclusive, mean cross mm) and the overlaps (k-1,) %
    of consecutive passes (module doc)."""
    a = as_finite(along, "along", 1)
    c = as_finite(cross, "cross", 1)
    if a.shape != c.shape:
        raise ValueError("along and cross must have the same length")
    f = check_rate(fs)
    out = np.empty((a.shape[0] // 2 + 1, 3))
    k = _passes(a, c, 1.0 / f, max(1, round(lag_s * f)), geometry.min_pass_speed,
                geometry.min_pass_length, out)
    p = out[:k].copy()
    overlap = 100.0 * (1.0 - np.abs(np.diff(p[:, 2])) / geometry.fan_width_mm)
    return p, overlap
