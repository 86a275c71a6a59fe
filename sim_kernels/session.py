"""One session's metric pipeline, streaming (chunk by chunk) and batch (parallel re-scoring).

Both paths run the same kernels in the same order on the same rows, so a session fed in any
chunking scores exactly as the batch re-scorer scores the stored trace (tested).

Pipeline per tool sample (poses ``x, y, z, qx, qy, qz, qw``, mm, scalar-last quaternion):

1. **Gaps** (:func:`fill_gaps`): a run of invalid samples between two valid ones is bridged if
   it is at most ``max_gap`` samples long: positions linearly, orientations by normalised
   linear interpolation on the same hemisphere; longer runs (and runs at either end) stay
   invalid and produce no observation. Interpolated samples are counted.
2. **Base quantities** (:mod:`sim_kernels.process`): weld ``work, travel, ctwd, aim, along``
   or spray ``distance, angle, along, cross``; tip position.
3. **Observations** (:mod:`sim_kernels.windows` conventions) per rubric metric: direct values;
   speeds over ``speed_lag`` samples (``min(lag, i)`` at the start; none at sample 0); weave
   amplitude/period at the end of every real-time window over the trailing
   ``weave_window`` samples (all must be valid; an undetectable period is ``+inf``); spray pass
   overlap at the last sample of each pass, at the end of the session.
4. **Alignment**: features = tip position / ``position_scale_mm`` and every instantaneous
   rubric parameter / half its window width; block means over ``decim`` samples (10 Hz
   by default) feed an open-ended DTW against the expert's blocks. Progress = matched block /
   (reference blocks - 1); ``expert_rms`` = distance / sqrt(trainee blocks).
5. **Motion quality** on the tip track (long gaps bridged linearly for this only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from sim_kernels._config import jit, pjit
from sim_kernels.motion import _quality
from sim_kernels.parameters import ALIGN_PARAMS
from sim_kernels.process import (
    SprayGeometry,
    WeldGeometry,
    _passes,
    _spray_row,
    _weave_one,
    _weld_row,
)
from sim_kernels.rubric import Rubric
from sim_kernels.scoring import ScoreResult, score_from_stats, window_score
from sim_kernels.streaming import _stream_rows
from sim_kernels.windows import CueEvent, CueTracker, _cues, _stats

# observation kinds
_DIRECT = 0
_SPEED1 = 1
_SPEED2 = 2
_WEAVE_AMP = 3
_WEAVE_PER = 4
_OVERLAP = 5

_WELD_BASE = {"work_angle": 0, "travel_angle": 1, "ctwd": 2, "aim_offset": 3}
_SPRAY_BASE = {"gun_distance": 0, "gun_angle": 1}

#: Weave below this amplitude (mm) is tracker jitter, not a weave (period = +inf).
WEAVE_MIN_AMPLITUDE_MM = 0.3
#: Pose rows a streaming session keeps (the gap context plus pending rows fit easily).
_POSE_ROWS = 1024
#: Motion-quality settings (see sim_kernels.motion): 50 ms smoothing, 2 mm/s idle speed.
SMOOTH_S = 0.05
IDLE_SPEED = 2.0


# --------------------------------------------------------------------------------------------
# kernels


@jit
def fill_gaps_kernel(poses: NDArray[np.float64], ok: NDArray[np.bool_], max_gap: int,
                     interp: NDArray[np.bool_]) -> None:
    """Bridge short invalid runs in place (rule in the module doc); ``ok``/``interp`` updated."""
    n = poses.shape[0]
    last = -1
    i = 0
    while i < n:
        if ok[i]:
            last = i
            i += 1
            continue
        j = i
        while j < n and not ok[j]:
            j += 1
        if last >= 0 and j < n and j - i <= max_gap:
            a = last
            b = j
            dot = 0.0
            for c in range(3, 7):
                dot += poses[a, c] * poses[b, c]
            sgn = 1.0 if dot >= 0.0 else -1.0
            for k in range(i, j):
                w = (k - a) / (b - a)
                for c in range(3):
                    poses[k, c] = poses[a, c] + w * (poses[b, c] - poses[a, c])
                nrm = 0.0
                for c in range(3, 7):
                    q = (1.0 - w) * poses[a, c] + w * sgn * poses[b, c]
                    poses[k, c] = q
                    nrm += q * q
                nrm = math.sqrt(nrm)
                for c in range(3, 7):
                    poses[k, c] /= nrm
                ok[k] = True
                interp[k] = True
        i = j


@jit
def _base_rows(process: int, poses: NDArray[np.float64], ok: NDArray[np.bool_], r0: int,
               r1: int, tip_offset: NDArray[np.float64], origin: NDArray[np.float64],
               frame: NDArray[np.float64], base: NDArray[np.float64],
               tip: NDArray[np.float64], poff: int) -> None:
    """Base quantities and tip of rows ``[r0, r1)`` (NaN for invalid rows); process 0 = weld,
    1 = spray. Same formulas as sim_kernels.process (see its module doc). Row ``i``'s pose is
    ``poses[i - poff]`` (the streaming path keeps only recent poses)."""
    ox, oy, oz = tip_offset[0], tip_offset[1], tip_offset[2]
    for i in range(r0, r1):
        pi = i - poff
        qx, qy, qz, qw = poses[pi, 3], poses[pi, 4], poses[pi, 5], poses[pi, 6]
        nrm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
        if not ok[i] or not (nrm > 1e-6):
            for c in range(base.shape[1]):
                base[i, c] = np.nan
            for c in range(3):
                tip[i, c] = np.nan
            continue
        qx /= nrm
        qy /= nrm
        qz /= nrm
        qw /= nrm
        r00 = 1.0 - 2.0 * (qy * qy + qz * qz)
        r01 = 2.0 * (qx * qy - qz * qw)
        r02 = 2.0 * (qx * qz + qy * qw)
        r10 = 2.0 * (qx * qy + qz * qw)
        r11 = 1.0 - 2.0 * (qx * qx + qz * qz)
        r12 = 2.0 * (qy * qz - qx * qw)
        r20 = 2.0 * (qx * qz - qy * qw)
        r21 = 2.0 * (qy * qz + qx * qw)
        r22 = 1.0 - 2.0 * (qx * qx + qy * qy)
        tx = poses[pi, 0] + r00 * ox + r01 * oy + r02 * oz
        ty = poses[pi, 1] + r10 * ox + r11 * oy + r12 * oz
        tz = poses[pi, 2] + r20 * ox + r21 * oy + r22 * oz
        tip[i, 0] = tx
        tip[i, 1] = ty
        tip[i, 2] = tz
        if process == 0:
            v0, v1, v2, v3, v4 = _weld_row(tx, ty, tz, r02, r12, r22, origin, frame)
            base[i, 0] = v0
            base[i, 1] = v1
            base[i, 2] = v2
            base[i, 3] = v3
            base[i, 4] = v4
        else:
            g0, g1, g2, g3 = _spray_row(tx, ty, tz, r02, r12, r22, origin, frame)
            base[i, 0] = g0
            base[i, 1] = g1
            base[i, 2] = g2
            base[i, 3] = g3


@jit
def _obs_rows(kinds: NDArray[np.int64], cols: NDArray[np.int64], base: NDArray[np.float64],
              r0: int, r1: int, dt: float, lag: int, win: int, wwin: int, min_amp: float,
              obs: NDArray[np.float64]) -> None:
    """Observation rows ``[r0, r1)`` from the base history (module doc, step 3)."""
    for i in range(r0, r1):
        for j in range(kinds.shape[0]):
            kind = kinds[j]
            c = cols[j]
            v = np.nan
            if kind == _DIRECT:
                v = base[i, c]
            elif kind == _SPEED1 or kind == _SPEED2:  # noqa: SIM109 (numba: plain compares)
                if i > 0:
                    L = min(lag, i)
                    d0 = base[i, c] - base[i - L, c]
                    if kind == _SPEED1:
                        v = d0 / (L * dt)
                    else:
                        d1 = base[i, c + 1] - base[i - L, c + 1]
                        v = math.sqrt(d0 * d0 + d1 * d1) / (L * dt)
            elif (kind == _WEAVE_AMP or kind == _WEAVE_PER) and (i + 1) % win == 0:  # noqa: SIM109
                s = max(0, i + 1 - wwin)
                good = i + 1 - s >= 3
                for k in range(s, i + 1):
                    if not np.isfinite(base[k, c]):
                        good = False
                        break
                if good:
                    amp, per = _weave_one(base[s:i + 1, c], dt, min_amp)
                    v = amp if kind == _WEAVE_AMP else (per if per == per else np.inf)
            obs[i, j] = v


@jit
def _feature_blocks(base: NDArray[np.float64], tip: NDArray[np.float64],
                    acols: NDArray[np.int64], ascale: NDArray[np.float64], pos_scale: float,
                    b0: int, b1: int, decim: int, out: NDArray[np.float64],
                    have: NDArray[np.bool_]) -> None:
    """Alignment feature block means for blocks ``[b0, b1)`` (module doc, step 4)."""
    nf = 3 + acols.shape[0]
    for b in range(b0, b1):
        cnt = 0
        for f in range(nf):
            out[b, f] = 0.0
        for i in range(b * decim, (b + 1) * decim):
            if not np.isfinite(tip[i, 0]):
                continue
            cnt += 1
            for f in range(3):
                out[b, f] += tip[i, f] / pos_scale
            for f in range(acols.shape[0]):
                out[b, 3 + f] += base[i, acols[f]] / ascale[f]
        have[b] = cnt > 0
        if cnt > 0:
            for f in range(nf):
                out[b, f] /= cnt


@jit
def _bridge_tip(tip: NDArray[np.float64]) -> NDArray[np.float64]:
    """Tip track with invalid rows bridged linearly (ends held) for motion quality."""
    n = tip.shape[0]
    out = tip.copy()
    last = -1
    for i in range(n):
        if np.isfinite(tip[i, 0]):
            if last >= 0 and i - last > 1:
                for k in range(last + 1, i):
                    w = (k - last) / (i - last)
                    for c in range(3):
                        out[k, c] = tip[last, c] + w * (tip[i, c] - tip[last, c])
            elif last < 0:
                for k in range(i):
                    for c in range(3):
                        out[k, c] = tip[i, c]
            last = i
    if last >= 0:
        for k in range(last + 1, n):
            for c in range(3):
                out[k, c] = tip[last, c]
    return out


@jit
def _overlap_obs(base: NDArray[np.float64], jcol: int, dt: float, lag: int, min_speed: float,
                 min_len: float, fan: float, obs: NDArray[np.float64]) -> None:
    """Spray pass overlaps as observations at the last row of each pass after the first."""
    n = base.shape[0]
    along = base[:, 2].copy()
    cross = base[:, 3].copy()
    out = np.empty((n // 2 + 1, 3))
    k = _passes(along, cross, dt, lag, min_speed, min_len, out)
    for i in range(n):
        obs[i, jcol] = np.nan
    for p in range(1, k):
        obs[int(out[p, 1]) - 1, jcol] = 100.0 * (1.0 - abs(out[p, 2] - out[p - 1, 2]) / fan)


@jit
def _gap_stats(ok: NDArray[np.bool_]) -> tuple[int, int]:
    """Number of runs of invalid rows (after bridging) and the longest run in rows."""
    runs = 0
    longest = 0
    cur = 0
    for i in range(ok.shape[0]):
        if not ok[i]:
            if cur == 0:
                runs += 1
            cur += 1
            longest = max(longest, cur)
        else:
            cur = 0
    return runs, longest


@jit
def _below_above(obs: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64],
                 out: NDArray[np.float64]) -> None:
    for j in range(obs.shape[1]):
        b = 0
        a = 0
        for i in range(obs.shape[0]):
            v = obs[i, j]
            if v != v:
                continue
            if v < lo[j]:
                b += 1
            elif v > hi[j]:
                a += 1
        out[j, 0] = b
        out[j, 1] = a


@jit
def _session_core(process: int, poses: NDArray[np.float64], ok: NDArray[np.bool_],
                  max_gap: int, tip_offset: NDArray[np.float64], origin: NDArray[np.float64],
                  frame: NDArray[np.float64], kinds: NDArray[np.int64],
                  cols: NDArray[np.int64], lo: NDArray[np.float64], hi: NDArray[np.float64],
                  dt: float, lag: int, win: int, wwin: int, min_amp: float,
                  acols: NDArray[np.int64], ascale: NDArray[np.float64], pos_scale: float,
                  decim: int, ref: NDArray[np.float64], band: int, spray: NDArray[np.float64],
                  stats: NDArray[np.float64], ba: NDArray[np.float64],
                  misc: NDArray[np.float64]) -> None:
    """Whole-session metrics (batch path). ``misc`` = sparc, ldlj, path, idle, submovements,
    movement time, dtw distance, trainee blocks, position, interpolated, valid samples,
    gap runs, longest gap (rows)."""
    n = poses.shape[0]
    interp = np.zeros(n, np.bool_)
    fill_gaps_kernel(poses, ok, max_gap, interp)
    nb_ = 5 if process == 0 else 4
    base = np.empty((n, nb_))
    tip = np.empty((n, 3))
    _base_rows(process, poses, ok, 0, n, tip_offset, origin, frame, base, tip, 0)
    obs = np.empty((n, kinds.shape[0]))
    _obs_rows(kinds, cols, base, 0, n, dt, lag, win, wwin, min_amp, obs)
    for j in range(kinds.shape[0]):
        if kinds[j] == _OVERLAP:
            _overlap_obs(base, j, dt, int(spray[2]), spray[0], spray[1], spray[3], obs)
    _stats(obs, lo, hi, stats)
    _below_above(obs, lo, hi, ba)
    nblk = n // decim
    feat = np.empty((max(nblk, 1), 3 + acols.shape[0]))
    have = np.zeros(max(nblk, 1), np.bool_)
    _feature_blocks(base, tip, acols, ascale, pos_scale, 0, nblk, decim, feat, have)
    dist = np.nan
    pos = -1
    used = 0
    if ref.shape[0] > 0:
        sel = np.empty((nblk, feat.shape[1]))
        for b in range(nblk):
            if have[b]:
                sel[used] = feat[b]
                used += 1
        buf = np.full(ref.shape[0] + 1, np.inf)
        buf[0] = 0.0
        if used > 0:
            best, arg, _ = _stream_rows(sel[:used], ref, buf, 0, band)
            dist = math.sqrt(best)
            pos = arg
    q = np.empty(8)
    _quality(_bridge_tip(tip), 1.0 / dt, max(0, round(SMOOTH_S / dt) // 2), 0.05,
             IDLE_SPEED, q)
    for k in range(6):
        misc[k] = q[k]
    misc[6] = dist
    misc[7] = used
    misc[8] = pos
    ni = 0
    nv = 0
    for i in range(n):
        if interp[i]:
            ni += 1
        if ok[i]:
            nv += 1
    misc[9] = ni
    misc[10] = nv
    runs, longest = _gap_stats(ok)
    misc[11] = runs
    misc[12] = longest


@jit
def _chunk_step(ip: NDArray[np.int64], fp: NDArray[np.float64], poses: NDArray[np.float64],
                ok: NDArray[np.bool_], interp: NDArray[np.bool_], tip_offset: NDArray[np.float64],
                origin: NDArray[np.float64], frame: NDArray[np.float64],
                base: NDArray[np.float64], tip: NDArray[np.float64], kinds: NDArray[np.int64],
                cols: NDArray[np.int64], obs: NDArray[np.float64], acols: NDArray[np.int64],
                ascale: NDArray[np.float64], feat: NDArray[np.float64], have: NDArray[np.bool_],
                ref: NDArray[np.float64], dtw_buf: NDArray[np.float64],
                cue_cols: NDArray[np.int64], clo: NDArray[np.float64], chi: NDArray[np.float64],
                ch: NDArray[np.float64], cdwell: NDArray[np.int64], cclear: NDArray[np.int64],
                cue_state: NDArray[np.int64], events: NDArray[np.int64], st: NDArray[np.int64],
                out: NDArray[np.float64]) -> int:
    """One streaming step in one call (the per-chunk hot path): bridge gaps in rows
    ``[ctx, decided)``, then base quantities, observations, alignment blocks and cues of rows
    ``[r0, decided)`` — the same kernels, in the same order, as the batch path.

    ``ip`` = process, lag, win, wwin, decim, band, max_gap; ``fp`` = dt, min weave amplitude,
    position scale; ``st`` (in/out) = ctx, decided, r0, blk_next, blocks_used, and the row
    of ``poses[0]``; ``out`` =
    best, arg, 1 if the alignment advanced. Returns the number of cue events (rows relative
    to ``r0``, columns indexing ``cue_cols``)."""
    ctx, decided, r0, poff = st[0], st[1], st[2], st[5]
    fill_gaps_kernel(poses[ctx - poff:decided - poff], ok[ctx:decided], ip[6],
                     interp[ctx:decided])
    _base_rows(ip[0], poses, ok, r0, decided, tip_offset, origin, frame, base, tip, poff)
    _obs_rows(kinds, cols, base, r0, decided, fp[0], ip[1], ip[2], ip[3], fp[1], obs)
    decim = ip[4]
    b0 = st[3]
    b1 = decided // decim
    out[2] = 0.0
    if b1 > b0:
        _feature_blocks(base, tip, acols, ascale, fp[2], b0, b1, decim, feat, have)
        if ref.shape[0] > 0:
            for b in range(b0, b1):
                if have[b]:
                    best, arg, _ = _stream_rows(feat[b:b + 1], ref, dtw_buf, st[4], ip[5])
                    st[4] += 1
                    out[0] = best
                    out[1] = arg
                    out[2] = 1.0
        st[3] = b1
    nc = cue_cols.shape[0]
    if nc == 0:
        return 0
    sub = np.empty((decided - r0, nc))
    for i in range(r0, decided):
        for c in range(nc):
            sub[i - r0, c] = obs[i, cue_cols[c]]
    return _cues(sub, clo, chi, ch, cdwell, cclear, cue_state, events)


@pjit
def _rescore_par(process: int, poses: NDArray[np.float64], ok: NDArray[np.bool_],
                 offsets: NDArray[np.int64], max_gap: int, tip_offset: NDArray[np.float64],
                 origin: NDArray[np.float64], frame: NDArray[np.float64],
                 kinds: NDArray[np.int64], cols: NDArray[np.int64], lo: NDArray[np.float64],
                 hi: NDArray[np.float64], dt: float, lag: int, win: int, wwin: int,
                 min_amp: float, acols: NDArray[np.int64], ascale: NDArray[np.float64],
                 pos_scale: float, decim: int, ref: NDArray[np.float64], band: int,
                 spray: NDArray[np.float64], stats: NDArray[np.float64],
                 ba: NDArray[np.float64], misc: NDArray[np.float64]) -> None:
    """Many sessions in parallel: one prange item per session; every buffer a session needs
    is allocated inside its item (per thread), results go to that session's output rows."""
    for s in prange(offsets.shape[0] - 1):
        a = offsets[s]
        b = offsets[s + 1]
        _session_core(process, poses[a:b].copy(), ok[a:b].copy(), max_gap, tip_offset,
                      origin, frame, kinds, cols, lo, hi, dt, lag, win, wwin, min_amp, acols,
                      ascale, pos_scale, decim, ref, band, spray, stats[s], ba[s], misc[s])


# --------------------------------------------------------------------------------------------
# exercise model


@dataclass(frozen=True)
class ExerciseModel:
    """Everything the kernels need about an exercise, precomputed once per exercise."""

    rubric: Rubric
    process: int  # 0 weld, 1 spray
    geometry: WeldGeometry | SprayGeometry
    fs: float
    names: tuple[str, ...]
    kinds: NDArray[np.int64]
    cols: NDArray[np.int64]
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    origin: NDArray[np.float64]
    frame: NDArray[np.float64]
    lag: int
    win: int
    wwin: int
    max_gap: int
    dwell: int
    clear: int
    acols: NDArray[np.int64]
    ascale: NDArray[np.float64]
    decim: int
    reference: NDArray[np.float64]  # (blocks, features); 0 rows = no reference
    band: int
    spray: NDArray[np.float64]  # min_pass_speed, min_pass_length, pass lag, fan width

    @classmethod
    def build(cls, rubric: Rubric, geometry: dict[str, Any], fs: float,
              reference_poses: NDArray[np.floating] | None = None,
              reference_fs: float | None = None, align_rate_hz: float = 10.0,
              max_gap_s: float = 0.1) -> ExerciseModel:
        """Precompute an exercise. ``reference_poses``: the expert's tool poses (m, 7), same
        layout as the trainee's, at ``reference_fs`` (default ``fs``); it is run through the
        same pipeline, so the expert is described exactly like a trainee."""
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError("fs must be a positive sample rate in Hz")
        proc = 0 if rubric.process == "welding" else 1
        geo: WeldGeometry | SprayGeometry = (
            WeldGeometry.from_dict(geometry) if proc == 0 else SprayGeometry.from_dict(geometry))
        names = rubric.metric_names()
        kinds = np.empty(len(names), np.int64)
        cols = np.zeros(len(names), np.int64)
        for j, name in enumerate(names):
            if proc == 0 and name in _WELD_BASE:
                kinds[j], cols[j] = _DIRECT, _WELD_BASE[name]
            elif proc == 1 and name in _SPRAY_BASE:
                kinds[j], cols[j] = _DIRECT, _SPRAY_BASE[name]
            elif name == "travel_speed":
                kinds[j], cols[j] = _SPEED1, 4
            elif name == "gun_speed":
                kinds[j], cols[j] = _SPEED2, 2
            elif name == "weave_amplitude":
                kinds[j], cols[j] = _WEAVE_AMP, 3
            elif name == "weave_period":
                kinds[j], cols[j] = _WEAVE_PER, 3
            elif name == "pass_overlap":
                kinds[j] = _OVERLAP
            else:  # pragma: no cover - rubric validation rejects these
                raise ValueError(f"metric {name} not computable for this process")
        rt = rubric.realtime
        lo = np.array([rubric.metrics[n].min for n in names])  # type: ignore[index]
        hi = np.array([rubric.metrics[n].max for n in names])  # type: ignore[index]
        acols_l = [int(cols[j]) for j, n in enumerate(names) if n in ALIGN_PARAMS]
        ascale_l = [0.5 * (hi[j] - lo[j]) for j, n in enumerate(names) if n in ALIGN_PARAMS]
        decim = max(1, round(fs / align_rate_hz))
        spray = np.zeros(4)
        if isinstance(geo, SprayGeometry):
            spray[:] = (geo.min_pass_speed, geo.min_pass_length, max(1, round(0.1 * fs)),
                        geo.fan_width_mm)
        origin = geo.line_start if isinstance(geo, WeldGeometry) else geo.point
        model = cls(
            rubric=rubric, process=proc, geometry=geo, fs=float(fs), names=names, kinds=kinds,
            cols=cols, lo=lo, hi=hi, origin=np.ascontiguousarray(origin, dtype=np.float64),
            frame=geo.frame(), lag=max(1, round(rt.speed_lag_s * fs)),
            win=max(1, round(rt.window_s * fs)), wwin=max(3, round(rt.weave_window_s * fs)),
            max_gap=max(0, round(max_gap_s * fs)), dwell=max(1, round(rt.dwell_s * fs)),
            clear=max(1, round(rt.clear_dwell_s * fs)),
            acols=np.array(acols_l, np.int64), ascale=np.array(ascale_l, np.float64),
            decim=decim, reference=np.empty((0, 3 + len(acols_l))), band=1 << 62, spray=spray)
        if reference_poses is None:
            return model
        rfs = fs if reference_fs is None else float(reference_fs)
        ref = model.features(reference_poses, rfs)
        if ref.shape[0] == 0:
            raise ValueError("reference trace has no valid alignment block")
        band = max(1, math.ceil(rubric.alignment.band_fraction * ref.shape[0]))
        if rubric.alignment.band_fraction >= 1.0:
            band = 1 << 62
        return _replace(model, reference=ref, band=band)

    def features(self, poses: NDArray[np.floating], fs: float) -> NDArray[np.float64]:
        """Alignment feature blocks of a whole trace (used for the expert reference)."""
        p = np.ascontiguousarray(np.asarray(poses, dtype=np.float64))
        if p.ndim != 2 or p.shape[1] != 7 or p.shape[0] < 1:
            raise ValueError(f"poses must be (m, 7), got {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError("reference poses contain NaN or inf")
        n = p.shape[0]
        ok = np.ones(n, np.bool_)
        nb_ = 5 if self.process == 0 else 4
        base = np.empty((n, nb_))
        tip = np.empty((n, 3))
        _base_rows(self.process, p, ok, 0, n, self.geometry.tip_offset, self.origin,
                   self.frame, base, tip, 0)
        decim = max(1, round(fs * self.decim / self.fs))
        nblk = n // decim
        feat = np.empty((max(nblk, 1), 3 + self.acols.shape[0]))
        have = np.zeros(max(nblk, 1), np.bool_)
        _feature_blocks(base, tip, self.acols, self.ascale,
                        self.rubric.alignment.position_scale_mm, 0, nblk, decim, feat, have)
        return np.ascontiguousarray(feat[:nblk][have[:nblk]])


def _replace(m: ExerciseModel, **kw: Any) -> ExerciseModel:
    d = {f: getattr(m, f) for f in m.__dataclass_fields__}
    d.update(kw)
    return ExerciseModel(**d)


# --------------------------------------------------------------------------------------------
# streaming


@dataclass(frozen=True)
class WindowStats:
    """A completed real-time window (rows ``[start, start + length)`` of the session)."""

    start: int
    length: int
    stats: NDArray[np.float64]  # (metrics, 5): count, inside, mean, std, finite
    score: float  # 0..100 (NaN if nothing observed)
    progress: float  # 0..1 through the expert reference (NaN without reference)
    distance: float  # running open-end DTW distance (NaN without reference)


@dataclass(frozen=True)
class SessionSummary:
    """End-of-session result plus data-quality figures."""

    result: ScoreResult
    samples: int
    valid_samples: int
    interpolated_samples: int
    motion: tuple[float, ...]  # sparc, ldlj, path mm, idle s, submovements, movement time s
    progress: float
    gaps: int  # runs of samples left invalid after bridging short gaps
    longest_gap_samples: int


class SessionMetrics:
    """Streaming form of the pipeline for one session (module doc)."""

    def __init__(self, model: ExerciseModel, capacity: int = 4096,
                 pose_rows: int = _POSE_ROWS) -> None:
        self.m = model
        cap = max(16, capacity)
        # recent poses only (rows >= _pbase): older ones are never read again
        self._poses = np.empty((max(2, pose_rows), 7))
        self._pbase = 0
        self._ok = np.zeros(cap, np.bool_)
        self._interp = np.zeros(cap, np.bool_)
        nb_ = 5 if model.process == 0 else 4
        self._base = np.empty((cap, nb_))
        self._tip = np.empty((cap, 3))
        self._obs = np.empty((cap, len(model.names)))
        self._n = 0  # rows fully processed
        self._pending_from = 0  # rows [pending_from, n_in) wait for a gap decision
        self._n_in = 0  # rows received
        self._last_valid = -1
        self._win_next = 0
        self._feat = np.empty((cap // model.decim + 2, 3 + model.acols.shape[0]))
        self._have = np.zeros(cap // model.decim + 2, np.bool_)
        self._blk_next = 0
        self._blocks_used = 0
        has_ref = model.reference.shape[0] > 0
        self._dtw_buf = np.full(model.reference.shape[0] + 1, np.inf)
        self._dtw_buf[0] = 0.0
        self._dist = math.nan if not has_ref else math.inf
        self._pos = -1
        # pass overlap is only known at the end of the session: never a real-time cue
        cue_cols = [j for j, n in enumerate(model.names)
                    if model.rubric.metrics[n].cue  # type: ignore[index]
                    and model.kinds[j] != _OVERLAP]
        self._cue_cols = np.array(cue_cols, np.int64)
        rules = [model.rubric.metrics[model.names[j]] for j in cue_cols]  # type: ignore[index]
        # same state machine and bounds as windows.CueTracker, driven from the fused step
        self._cues = CueTracker(
            model.lo[self._cue_cols], model.hi[self._cue_cols],
            np.array([r.effective_hysteresis for r in rules]),
            self._per_obs(model.dwell, cue_cols), self._per_obs(model.clear, cue_cols)) \
            if cue_cols else None
        self._ip = np.array([model.process, model.lag, model.win, model.wwin, model.decim,
                             model.band, model.max_gap], np.int64)
        self._fp = np.array([1.0 / model.fs, WEAVE_MIN_AMPLITUDE_MM,
                             model.rubric.alignment.position_scale_mm])
        self._st = np.zeros(6, np.int64)
        self._out = np.zeros(3)
        self._events = np.empty((64, 4), np.int64)
        self._cue_arrays = self._cues.arrays() if self._cues is not None else (
            np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
            np.zeros(0, np.int64), np.zeros((0, 4), np.int64))

    def _per_obs(self, samples: int, cols: list[int]) -> NDArray[np.int64]:
        """A dwell in samples as a count of observations per cue column: weave metrics are
        observed once per real-time window, so their dwell is ceil(samples / window)."""
        m = self.m
        return np.array([max(1, math.ceil(samples / m.win))
                         if m.kinds[j] in (_WEAVE_AMP, _WEAVE_PER) else samples for j in cols],
                        np.int64)

    # -- buffers
    def _grow(self, need: int) -> None:
        cap = self._ok.shape[0]
        if need <= cap:
            return
        new = max(need, 2 * cap)

        def g(a: NDArray[Any]) -> NDArray[Any]:
            b = np.empty((new, *a.shape[1:]), a.dtype)
            b[:cap] = a
            return b

        self._ok = g(self._ok)
        self._interp = g(self._interp)
        self._base = g(self._base)
        self._tip = g(self._tip)
        self._obs = g(self._obs)
        nblk = new // self.m.decim + 2
        f = np.empty((nblk, self._feat.shape[1]))
        f[: self._feat.shape[0]] = self._feat
        h = np.zeros(nblk, np.bool_)
        h[: self._have.shape[0]] = self._have
        self._feat, self._have = f, h

    @property
    def rows(self) -> int:
        """Rows whose observations are final (a trailing gap may still be pending)."""
        return self._n

    @property
    def progress(self) -> float:
        r = self.m.reference.shape[0]
        if r == 0:
            return math.nan
        if self._pos < 0:
            return 0.0
        return 1.0 if r == 1 else self._pos / (r - 1)

    @property
    def distance(self) -> float:
        return self._dist

    def _room(self, k: int) -> None:
        """Make room for ``k`` more poses: drop rows before the gap context (the last row
        before the undecided ones), growing only if a gap is still pending that long."""
        if self._n_in + k - self._pbase <= self._poses.shape[0]:
            return
        keep = max(self._pbase, self._pending_from - 1)
        rows = self._n_in - keep
        self._poses[:rows] = self._poses[keep - self._pbase:self._n_in - self._pbase]
        self._pbase = keep
        if rows + k > self._poses.shape[0]:
            grown = np.empty((max(2 * self._poses.shape[0], rows + k), 7))
            grown[:rows] = self._poses[:rows]
            self._poses = grown

    def observation(self, row: int, col: int) -> float:
        """The observation of metric column ``col`` at session row ``row``."""
        return float(self._obs[row, col])

    def feed(self, poses: NDArray[np.floating], valid: NDArray[np.bool_],
             final: bool = False) -> tuple[list[WindowStats], list[tuple[int, CueEvent]]]:
        """Append samples (k, 7) with validity flags; return completed windows and cue
        changes as ``(row, event)``. ``final`` resolves a trailing gap (end of session)."""
        k = poses.shape[0]
        self._grow(self._n_in + k)
        a = self._n_in
        self._room(k)
        pa = a - self._pbase
        self._poses[pa:pa + k] = poses
        # a sample flagged valid but holding NaN/inf is lost all the same (as in rescoring)
        self._ok[a:a + k] = valid & np.isfinite(self._poses[pa:pa + k]).all(axis=1)
        self._interp[a:a + k] = False
        self._n_in += k
        # decide pending gap rows: everything up to the last valid row is decidable
        end = self._n_in
        lv = a + k - 1
        while lv >= a and not self._ok[lv]:
            lv -= 1
        if lv >= a:
            self._last_valid = lv
        decided = self._last_valid + 1 if not final else end
        # a trailing gap longer than max_gap is already known to be a real gap
        if not final and end - decided > self.m.max_gap:
            decided = end - self.m.max_gap
        lo = self._pending_from
        if decided <= lo:
            return [], []
        # bridge short gaps inside [context, decided): include the previous valid row
        self._pending_from = decided
        return self._process(max(0, lo - 1), decided)

    def _process(self, ctx: int, upto: int
                 ) -> tuple[list[WindowStats], list[tuple[int, CueEvent]]]:
        m = self.m
        r0 = self._n
        ncue = self._cue_cols.shape[0]
        if self._events.shape[0] < (upto - r0) * max(1, ncue):
            self._events = np.empty(((upto - r0) * max(1, ncue), 4), np.int64)
        st = self._st
        st[0] = ctx
        st[1] = upto
        st[2] = r0
        st[5] = self._pbase
        clo, chi, ch, cdw, ccl, cst = self._cue_arrays
        ne = _chunk_step(
            self._ip, self._fp, self._poses, self._ok, self._interp, m.geometry.tip_offset,
            m.origin, m.frame, self._base, self._tip, m.kinds, m.cols, self._obs, m.acols,
            m.ascale, self._feat, self._have, m.reference, self._dtw_buf, self._cue_cols,
            clo, chi, ch, cdw, ccl, cst, self._events, st, self._out)
        self._n = upto
        self._blk_next = int(st[3])
        self._blocks_used = int(st[4])
        if self._out[2] > 0.0:
            self._dist = math.sqrt(self._out[0])
            self._pos = int(self._out[1])
        events: list[tuple[int, CueEvent]] = []
        for q in range(ne):
            r, c, d, a = self._events[q]
            events.append((r0 + int(r), CueEvent(r0 + int(r), int(self._cue_cols[c]), int(d),
                                                 bool(a))))
        windows: list[WindowStats] = []
        while self._win_next + m.win <= upto:
            s = self._win_next
            ws = np.empty((len(m.names), 5))
            _stats(self._obs[s:s + m.win], m.lo, m.hi, ws)
            windows.append(WindowStats(s, m.win, ws, window_score(m.rubric, ws), self.progress,
                                       self._dist))
            self._win_next += m.win
        return windows, events

    def finish(self) -> SessionSummary:
        """Resolve trailing rows and compute the final result (same arithmetic as batch)."""
        self.feed(np.empty((0, 7)), np.empty(0, np.bool_), final=True)
        m = self.m
        n = self._n
        obs = self._obs[:n]
        for j in range(len(m.names)):
            if m.kinds[j] == _OVERLAP:
                _overlap_obs(self._base[:n], j, 1.0 / m.fs, int(m.spray[2]), m.spray[0],
                             m.spray[1], m.spray[3], obs)
        st = np.empty((len(m.names), 5))
        _stats(obs, m.lo, m.hi, st)
        ba = np.empty((len(m.names), 2))
        _below_above(obs, m.lo, m.hi, ba)
        q = np.empty(8)
        _quality(_bridge_tip(self._tip[:n]), m.fs, max(0, round(SMOOTH_S * m.fs) // 2), 0.05,
                 IDLE_SPEED, q)
        runs, longest = _gap_stats(self._ok[:n])
        misc = np.array([*q[:6], self._dist, self._blocks_used, self._pos,
                         int(self._interp[:n].sum()), int(self._ok[:n].sum()), runs, longest])
        return _summary(m, st, ba, misc, n)


def _summary(m: ExerciseModel, st: NDArray[np.float64], ba: NDArray[np.float64],
             misc: NDArray[np.float64], n: int) -> SessionSummary:
    used = int(misc[7])
    dist = float(misc[6])
    rms = dist / math.sqrt(used) if used > 0 and dist == dist else math.nan
    if m.reference.shape[0] > 0 and used == 0:
        rms = math.inf  # a reference exists but nothing was aligned: expert component 0
    res = score_from_stats(m.rubric, st, ba[:, 0], ba[:, 1], float(misc[0]), rms)
    r = m.reference.shape[0]
    pos = int(misc[8])
    prog = math.nan if r == 0 else (0.0 if pos < 0 else (1.0 if r == 1 else pos / (r - 1)))
    return SessionSummary(result=res, samples=n, valid_samples=int(misc[10]),
                          interpolated_samples=int(misc[9]),
                          motion=tuple(float(x) for x in misc[:6]), progress=prog,
                          gaps=int(misc[11]), longest_gap_samples=int(misc[12]))


def rescore_sessions(model: ExerciseModel, sessions: list[tuple[NDArray[np.floating],
                                                                NDArray[np.bool_]]]
                     ) -> list[SessionSummary]:
    """Re-score stored sessions ``(poses (n, 7), valid (n,))`` under ``model`` (typically a
    new rubric version) in parallel; equals feeding each session through
    :class:`SessionMetrics` and calling ``finish()``."""
    if not sessions:
        return []
    arrs = []
    oks = []
    for i, (p, v) in enumerate(sessions):
        pa = np.asarray(p, dtype=np.float64)
        va = np.asarray(v, dtype=np.bool_)
        if pa.ndim != 2 or pa.shape[1] != 7 or va.shape != (pa.shape[0],):
            raise ValueError(f"session {i}: need poses (n, 7) and valid (n,)")
        va = va & np.isfinite(pa).all(axis=1)
        pa = np.where(va[:, None], pa, 0.0)
        arrs.append(pa)
        oks.append(va)
    offsets = np.zeros(len(arrs) + 1, np.int64)
    offsets[1:] = np.cumsum([a.shape[0] for a in arrs])
    poses = np.ascontiguousarray(np.concatenate(arrs))
    ok = np.ascontiguousarray(np.concatenate(oks))
    p_ = len(model.names)
    stats = np.empty((len(arrs), p_, 5))
    ba = np.empty((len(arrs), p_, 2))
    misc = np.empty((len(arrs), 13))
    _rescore_par(model.process, poses, ok, offsets, model.max_gap, model.geometry.tip_offset,
                 model.origin, model.frame, model.kinds, model.cols, model.lo, model.hi,
                 1.0 / model.fs, model.lag, model.win, model.wwin, WEAVE_MIN_AMPLITUDE_MM,
                 model.acols, model.ascale, model.rubric.alignment.position_scale_mm,
                 model.decim, model.reference, model.band, model.spray, stats, ba, misc)
    return [_summary(model, stats[s], ba[s], misc[s], int(offsets[s + 1] - offsets[s]))
            for s in range(len(arrs))]
