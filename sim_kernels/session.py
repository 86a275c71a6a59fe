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

from sim_kernels._config import chunk_jit, jit, pjit
from sim_kernels.motion import _quality
from sim_kernels.parameters import ALIGN_PARAMS
from sim_kernels.process import (
    SprayGeometry,
    WeldGeometry,
    _passes,
    _spray_row,
    _weave_one,
    _weld_row,
    tip_and_axis,
)
from sim_kernels.rubric import Rubric
from sim_kernels.scoring import (
    ScoreResult,
    score_from_stats,
    window_score_rows,
    window_weights,
)
from sim_kernels.streaming import _stream_rows
from sim_kernels.windows import CueEvent, CueTracker, _cues_at, _stats

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
        tx, ty, tz, r02, r12, r22 = tip_and_axis(poses[pi, 0], poses[pi, 1], poses[pi, 2],
                                                 qx / nrm, qy / nrm, qz / nrm, qw / nrm,
                                                 ox, oy, oz)
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


# Packed per-session state of the streaming path (SessionMetrics). One numba call per chunk
# costs ~0.25-0.4 us per array argument to type and unbox (measured on the 2-core dev machine),
# so the state lives in two flat arrays instead of ~25: ``si`` (int64: settings, counters, cue
# state, cue events, and the bool flags ok/interp/have as bytes) and ``sf`` (float64:
# settings, DTW row, pose ring, per-row times/base/tip/obs, feature blocks). The kernels see
# C-contiguous reshaped views, i.e. the same array types (and so the same machine code) as the
# batch path.
_I_PROCESS = 0
_I_LAG = 1
_I_WIN = 2
_I_WWIN = 3
_I_DECIM = 4
_I_BAND = 5
_I_MAXGAP = 6
_I_P = 7  # metric columns
_I_NC = 8  # cue columns
_I_NA = 9  # alignment parameter columns
_I_NB = 10  # base quantity columns (5 weld, 4 spray)
_I_N = 11  # rows fully processed
_I_PEND = 12  # rows [pend, nin) wait for a gap decision
_I_NIN = 13  # rows received
_I_LASTV = 14  # last valid row (-1: none yet)
_I_PBASE = 15  # session row of pose ring row 0
_I_WINNEXT = 16  # first row of the next real-time window
_I_BLKNEXT = 17  # next alignment block
_I_BLKUSED = 18  # blocks fed to the DTW
_I_CAP = 19  # row capacity of the per-row segments
_I_RING = 20  # pose ring rows
_I_NE = 21  # cue events of the last call (rows absolute)
_I_NEED = 22  # size a growth request asks for
_I_POS = 23  # best-matching reference block (-1: none yet)
_I_NBLK = 24  # feature block capacity
_I_F_RING = 25  # offsets into sf
_I_F_TIMES = 26
_I_F_BASE = 27
_I_F_TIP = 28
_I_F_OBS = 29
_I_F_FEAT = 30
_I_F_DTW = 31
_I_EV = 32  # offset in si of the cue events (ecap, 4): row, cue column, direction, on
_I_ECAP = 33
_I_BOOL = 34  # offset in si of the flag bytes: ok[cap], interp[cap], have[nblk]
_I_HEAD = 36  # then kinds[p], cols[p], acols[na], cue_cols[nc], dwell[nc], clear[nc], state
_F_DT = 0
_F_MINAMP = 1
_F_POSSCALE = 2
_F_DIST = 3  # running DTW distance (NaN without reference, inf before the first block)
_F_TIPOFF = 4  # 3
_F_ORIGIN = 7  # 3
_F_FRAME = 10  # 3 x 3
_F_FS = 19  # nominal sample rate (Hz)
_F_PTOL = 20  # relative tolerance of a chunk's period vs 1/fs (< 0: not checked)
_F_HEAD = 21  # then ascale[na], cue lo[nc], hi[nc], hysteresis[nc], DTW row, segments
# _feed_kernel results: >= 0 is a bit set; -1..-3 ask the caller to grow a buffer (size in
# si[_I_NEED]); <= -10 reject the chunk. In every negative case nothing was changed.
FED_EVENTS = 1
FED_WINDOW = 2
_NEED_ROWS = -1
_NEED_RING = -2
_NEED_EVENTS = -3
BAD_SHAPE = -10  # poses not (k, trackers, 7) or valid not (k, trackers)
BAD_TOOL = -11  # the tool tracker index is not in the chunk
BAD_PERIOD = -12  # the chunk's sample period does not match the nominal rate


@chunk_jit
def _feed_kernel(poses: NDArray[np.floating], valid: NDArray[np.bool_], tool: int, t0: float,
                 period: float, final: bool, si: NDArray[np.int64], sf: NDArray[np.float64],
                 ref: NDArray[np.float64]) -> int:
    """One streaming step (the per-chunk hot path) in one call: copy tracker ``tool`` of
    ``poses`` (k, trackers, 7) in (a sample flagged valid but holding NaN/inf is lost all the
    same), stamp row times ``t0 + period * j``, decide pending gap rows, then bridge gaps,
    base quantities, observations, alignment blocks and cues of the decided rows — the same
    kernels, in the same order, as the batch path. ``final`` resolves a trailing gap.

    Returns :data:`FED_EVENTS` | :data:`FED_WINDOW` bits (0: nothing to report), or a
    negative code and no state changed: a buffer to grow (size needed in ``si[_I_NEED]``,
    then call again) or a rejected chunk (:data:`BAD_SHAPE`, :data:`BAD_TOOL`,
    :data:`BAD_PERIOD`)."""
    k = poses.shape[0]
    if poses.shape[2] != 7 or valid.shape[0] != k or valid.shape[1] != poses.shape[1]:
        return BAD_SHAPE
    if tool >= poses.shape[1]:
        return BAD_TOOL
    if sf[_F_PTOL] >= 0.0 and not abs(period * sf[_F_FS] - 1.0) <= sf[_F_PTOL]:
        return BAD_PERIOD
    if k == 0 and not final:
        return 0
    n_in = si[_I_NIN]
    n = si[_I_N]
    pbase = si[_I_PBASE]
    pend = si[_I_PEND]
    nc = si[_I_NC]
    ring_rows = si[_I_RING]
    # -- room (checked before anything changes)
    if n_in + k > si[_I_CAP]:
        si[_I_NEED] = n_in + k
        return _NEED_ROWS
    if (n_in + k - n) * max(1, nc) > si[_I_ECAP]:
        si[_I_NEED] = (n_in + k - n) * max(1, nc)
        return _NEED_EVENTS
    move = n_in + k - pbase > ring_rows
    keep = max(pbase, pend - 1)  # rows before the gap context are never read again
    if move and n_in - keep + k > ring_rows:
        si[_I_NEED] = max(2 * ring_rows, n_in - keep + k)
        return _NEED_RING
    # -- views
    p = si[_I_P]
    na = si[_I_NA]
    nb_ = si[_I_NB]
    cap = si[_I_CAP]
    nblk = si[_I_NBLK]
    o = _I_HEAD
    kinds = si[o:o + p]
    cols = si[o + p:o + 2 * p]
    acols = si[o + 2 * p:o + 2 * p + na]
    o += 2 * p + na
    cue_cols = si[o:o + nc]
    cdwell = si[o + nc:o + 2 * nc]
    cclear = si[o + 2 * nc:o + 3 * nc]
    cstate = si[o + 3 * nc:o + 7 * nc].reshape((nc, 4))
    tip_offset = sf[_F_TIPOFF:_F_TIPOFF + 3]
    origin = sf[_F_ORIGIN:_F_ORIGIN + 3]
    frame = sf[_F_FRAME:_F_FRAME + 9].reshape((3, 3))
    o = _F_HEAD
    ascale = sf[o:o + na]
    clo = sf[o + na:o + na + nc]
    chi = sf[o + na + nc:o + na + 2 * nc]
    ch = sf[o + na + 2 * nc:o + na + 3 * nc]
    dtw_buf = sf[si[_I_F_DTW]:si[_I_F_DTW] + ref.shape[0] + 1]
    ring = sf[si[_I_F_RING]:si[_I_F_RING] + 7 * ring_rows].reshape((ring_rows, 7))
    times = sf[si[_I_F_TIMES]:si[_I_F_TIMES] + cap]
    base = sf[si[_I_F_BASE]:si[_I_F_BASE] + cap * nb_].reshape((cap, nb_))
    tip = sf[si[_I_F_TIP]:si[_I_F_TIP] + cap * 3].reshape((cap, 3))
    obs = sf[si[_I_F_OBS]:si[_I_F_OBS] + cap * p].reshape((cap, p))
    nf = 3 + na
    feat = sf[si[_I_F_FEAT]:si[_I_F_FEAT] + nblk * nf].reshape((nblk, nf))
    ev = si[si[_I_EV]:si[_I_EV] + 4 * si[_I_ECAP]].reshape((si[_I_ECAP], 4))
    flags = si[si[_I_BOOL]:si[_I_BOOL] + (2 * cap + nblk + 7) // 8].view(np.bool_)
    ok = flags[:cap]
    interp = flags[cap:2 * cap]
    have = flags[2 * cap:2 * cap + nblk]
    si[_I_NE] = 0
    # -- copy in
    if move:
        rows = n_in - keep
        for r in range(rows):
            for c in range(7):
                ring[r, c] = ring[keep - pbase + r, c]
        pbase = keep
        si[_I_PBASE] = keep
    for j in range(k):
        r = n_in + j
        good = bool(valid[j, tool])
        for c in range(7):
            v = float(poses[j, tool, c])
            ring[r - pbase, c] = v
            if not np.isfinite(v):
                good = False
        ok[r] = good
        interp[r] = False
        times[r] = t0 + period * j
    end = n_in + k
    si[_I_NIN] = end
    # -- gap decision: everything up to the last valid row is decidable
    lv = end - 1
    while lv >= n_in and not ok[lv]:
        lv -= 1
    if lv >= n_in:
        si[_I_LASTV] = lv
    decided = si[_I_LASTV] + 1 if not final else end
    # a trailing gap longer than max_gap is already known to be a real gap
    if not final and end - decided > si[_I_MAXGAP]:
        decided = end - si[_I_MAXGAP]
    if decided <= pend:
        return 0
    si[_I_PEND] = decided
    # -- bridge short gaps inside [context, decided): include the previous valid row
    ctx = max(0, pend - 1)
    r0 = n
    fill_gaps_kernel(ring[ctx - pbase:decided - pbase], ok[ctx:decided], si[_I_MAXGAP],
                     interp[ctx:decided])
    _base_rows(si[_I_PROCESS], ring, ok, r0, decided, tip_offset, origin, frame, base, tip,
               pbase)
    _obs_rows(kinds, cols, base, r0, decided, sf[_F_DT], si[_I_LAG], si[_I_WIN], si[_I_WWIN],
              sf[_F_MINAMP], obs)
    decim = si[_I_DECIM]
    b0 = si[_I_BLKNEXT]
    b1 = decided // decim
    if b1 > b0:
        _feature_blocks(base, tip, acols, ascale, sf[_F_POSSCALE], b0, b1, decim, feat, have)
        if ref.shape[0] > 0:
            for b in range(b0, b1):
                if have[b]:
                    best, arg, _ = _stream_rows(feat[b:b + 1], ref, dtw_buf, si[_I_BLKUSED],
                                                si[_I_BAND])
                    si[_I_BLKUSED] += 1
                    sf[_F_DIST] = math.sqrt(best)
                    si[_I_POS] = arg
        si[_I_BLKNEXT] = b1
    si[_I_N] = decided
    code = 0
    if nc > 0:
        ne = _cues_at(obs, r0, decided, cue_cols, clo, chi, ch, cdwell, cclear, cstate, ev)
        si[_I_NE] = ne
        if ne > 0:
            code |= FED_EVENTS
    if si[_I_WINNEXT] + si[_I_WIN] <= decided:
        code |= FED_WINDOW
    return code


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
    """Streaming form of the pipeline for one session (module doc).

    The state is packed in a few flat arrays (see :func:`_feed_kernel`) so that a chunk costs
    one numba call; Python objects are only built when a window completes or a cue changes.
    """

    def __init__(self, model: ExerciseModel, capacity: int = 4096,
                 pose_rows: int = _POSE_ROWS) -> None:
        self.m = model
        p = len(model.names)
        na = int(model.acols.shape[0])
        # pass overlap is only known at the end of the session: never a real-time cue
        cue_cols = [j for j, n in enumerate(model.names)
                    if model.rubric.metrics[n].cue  # type: ignore[index]
                    and model.kinds[j] != _OVERLAP]
        nc = len(cue_cols)
        cc = np.array(cue_cols, np.int64)
        rules = [model.rubric.metrics[model.names[j]] for j in cue_cols]  # type: ignore[index]
        # same state machine and bounds as windows.CueTracker (its checks and margins), driven
        # from the fused step
        clo, chi, ch, cdw, ccl, _ = CueTracker(
            model.lo[cc], model.hi[cc], np.array([r.effective_hysteresis for r in rules]),
            self._per_obs(cue_cols), self._per_obs(cue_cols, clear=True)).arrays() \
            if cue_cols else (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
                              np.zeros(0, np.int64), None)
        self._ifixed = _I_HEAD + 2 * p + na + 7 * nc  # si before events and flags
        si = np.zeros(self._ifixed, np.int64)
        si[[_I_PROCESS, _I_LAG, _I_WIN, _I_WWIN, _I_DECIM, _I_BAND, _I_MAXGAP, _I_P, _I_NC,
           _I_NA, _I_NB]] = (model.process, model.lag, model.win, model.wwin, model.decim,
                             model.band, model.max_gap, p, nc, na,
                             5 if model.process == 0 else 4)
        si[_I_LASTV] = -1
        si[_I_POS] = -1
        o = _I_HEAD
        si[o:o + p] = model.kinds
        si[o + p:o + 2 * p] = model.cols
        si[o + 2 * p:o + 2 * p + na] = model.acols
        o += 2 * p + na
        si[o:o + nc] = cc
        si[o + nc:o + 2 * nc] = cdw
        si[o + 2 * nc:o + 3 * nc] = ccl
        self._si = si
        m_ref = model.reference.shape[0]
        head = _F_HEAD + na + 3 * nc
        si[_I_F_DTW] = head
        self._fixed = head + m_ref + 1  # sf before the resizable segments
        sf = np.zeros(self._fixed)
        sf[[_F_DT, _F_MINAMP, _F_POSSCALE, _F_DIST, _F_FS, _F_PTOL]] = (
            1.0 / model.fs, WEAVE_MIN_AMPLITUDE_MM, model.rubric.alignment.position_scale_mm,
            math.nan if m_ref == 0 else math.inf, model.fs, -1.0)
        sf[_F_TIPOFF:_F_TIPOFF + 3] = model.geometry.tip_offset
        sf[_F_ORIGIN:_F_ORIGIN + 3] = model.origin
        sf[_F_FRAME:_F_FRAME + 9] = model.frame.ravel()
        o = _F_HEAD
        sf[o:o + na] = model.ascale
        sf[o + na:o + na + nc] = clo
        sf[o + na + nc:o + na + 2 * nc] = chi
        sf[o + na + 2 * nc:o + na + 3 * nc] = ch
        sf[head:head + m_ref + 1] = np.inf
        sf[head] = 0.0
        self._sf = sf
        self._cue_cols = cc
        self._weights = window_weights(model.rubric)
        # numpy views of the segments, set by _layout (finish(), windows, cue values, times)
        self._ring: NDArray[np.float64]
        self._times: NDArray[np.float64]
        self._base: NDArray[np.float64]
        self._tip: NDArray[np.float64]
        self._obs: NDArray[np.float64]
        self._feat: NDArray[np.float64]
        self._ok: NDArray[np.bool_]
        self._interp: NDArray[np.bool_]
        self._flags: NDArray[np.bool_]
        self._ev: NDArray[np.int64]
        self._layout(max(16, capacity), max(2, pose_rows), 64)

    def _per_obs(self, cols: list[int], clear: bool = False) -> NDArray[np.int64]:
        """A dwell in samples as a count of observations per cue column: weave metrics are
        observed once per real-time window, so their dwell is ceil(samples / window)."""
        m = self.m
        samples = m.clear if clear else m.dwell
        return np.array([max(1, math.ceil(samples / m.win))
                         if m.kinds[j] in (_WEAVE_AMP, _WEAVE_PER) else samples for j in cols],
                        np.int64)

    # -- buffers
    def _layout(self, cap: int, ring_rows: int, ecap: int) -> None:
        """(Re)allocate the resizable segments for ``cap`` rows, a ``ring_rows`` pose ring and
        ``ecap`` cue events, keeping their contents (session rows keep their positions, the
        ring keeps its rows; events are collected before the next call, never kept)."""
        old_i, old_f = self._si, self._sf
        p, nb_, nf = int(old_i[_I_P]), int(old_i[_I_NB]), 3 + int(old_i[_I_NA])
        nblk = cap // self.m.decim + 2
        sizes = (ring_rows * 7, cap, cap * nb_, cap * 3, cap * p, nblk * nf)
        offs = np.cumsum((self._fixed, *sizes[:-1]))
        sf = np.empty(int(offs[-1]) + sizes[-1])
        sf[:self._fixed] = old_f[:self._fixed]
        ev_at = self._ifixed
        flags_at = ev_at + 4 * ecap
        si = np.zeros(flags_at + (2 * cap + nblk + 7) // 8, np.int64)
        si[:self._ifixed] = old_i[:self._ifixed]
        flags = si[flags_at:].view(np.bool_)
        old_cap = int(si[_I_CAP])
        if old_cap:
            old_ring = int(si[_I_RING])
            sf[offs[0]:offs[0] + old_ring * 7] = self._ring[:old_ring].ravel()
            for seg, old in zip((1, 2, 3, 4), (self._times, self._base, self._tip, self._obs),
                                strict=True):
                sf[offs[seg]:offs[seg] + old.size] = old.ravel()
            old_nblk = int(si[_I_NBLK])
            sf[offs[5]:offs[5] + old_nblk * nf] = self._feat.ravel()
            old_b = self._flags
            flags[:old_cap] = old_b[:old_cap]
            flags[cap:cap + old_cap] = old_b[old_cap:2 * old_cap]
            flags[2 * cap:2 * cap + old_nblk] = old_b[2 * old_cap:2 * old_cap + old_nblk]
        si[[_I_CAP, _I_RING, _I_NBLK, _I_F_RING, _I_F_TIMES, _I_F_BASE, _I_F_TIP, _I_F_OBS,
           _I_F_FEAT, _I_EV, _I_ECAP, _I_BOOL]] = (cap, ring_rows, nblk, *offs, ev_at, ecap,
                                                  flags_at)
        self._si, self._sf = si, sf
        self._ev = si[ev_at:flags_at].reshape(ecap, 4)
        self._flags = flags
        self._ring = sf[offs[0]:offs[0] + sizes[0]].reshape(ring_rows, 7)
        self._times = sf[offs[1]:offs[1] + cap]
        self._base = sf[offs[2]:offs[2] + sizes[2]].reshape(cap, nb_)
        self._tip = sf[offs[3]:offs[3] + sizes[3]].reshape(cap, 3)
        self._obs = sf[offs[4]:offs[4] + sizes[4]].reshape(cap, p)
        self._feat = sf[offs[5]:offs[5] + sizes[5]].reshape(nblk, nf)
        self._ok = flags[:cap]
        self._interp = flags[cap:2 * cap]

    def _grow(self, code: int) -> None:
        """Serve a :func:`_feed_kernel` request for more room."""
        si = self._si
        need = int(si[_I_NEED])
        cap, ring, ecap = int(si[_I_CAP]), int(si[_I_RING]), int(si[_I_ECAP])
        if code == _NEED_ROWS:
            self._layout(max(need, 2 * cap), ring, ecap)
        elif code == _NEED_RING:
            self._layout(cap, need, ecap)
        else:
            self._layout(cap, ring, max(need, 2 * ecap))

    @property
    def rows(self) -> int:
        """Rows whose observations are final (a trailing gap may still be pending)."""
        return int(self._si[_I_N])

    @property
    def progress(self) -> float:
        r = self.m.reference.shape[0]
        pos = int(self._si[_I_POS])
        if r == 0:
            return math.nan
        if pos < 0:
            return 0.0
        return 1.0 if r == 1 else pos / (r - 1)

    @property
    def distance(self) -> float:
        return float(self._sf[_F_DIST])

    def observation(self, row: int, col: int) -> float:
        """The observation of metric column ``col`` at session row ``row``."""
        return float(self._obs[row, col])

    def rig_time(self, row: int) -> float:
        """``t0 + period * j`` of the :meth:`feed_chunk` sample that became row ``row``."""
        return float(self._times[row])

    def check_period(self, tolerance: float) -> None:
        """Make :meth:`feed_chunk` reject (:data:`BAD_PERIOD`) a chunk whose period deviates
        from 1/fs by more than ``tolerance`` (relative)."""
        self._sf[_F_PTOL] = tolerance

    def feed_chunk(self, poses: NDArray[np.floating], valid: NDArray[np.bool_], tool: int,
                   t0: float = 0.0, period: float = 0.0, final: bool = False) -> int:
        """Append tracker ``tool`` of ``poses`` (k, trackers, 7) / ``valid`` (k, trackers),
        stamping row times ``t0 + period * j``. Returns :data:`FED_EVENTS` |
        :data:`FED_WINDOW` bits; 0 (the common case): no window completed, no cue changed,
        nothing to collect. Otherwise :meth:`collect` returns what was produced. A rejected
        chunk returns :data:`BAD_SHAPE`, :data:`BAD_TOOL` or :data:`BAD_PERIOD` and changes
        nothing."""
        code: int = _feed_kernel(poses, valid, tool, t0, period, final, self._si, self._sf,
                                 self.m.reference)
        while _NEED_EVENTS <= code < 0:  # a buffer is full: grow it (nothing changed), again
            self._grow(code)
            code = _feed_kernel(poses, valid, tool, t0, period, final, self._si, self._sf,
                                self.m.reference)
        return code

    def collect(self, code: int
                ) -> tuple[list[WindowStats], list[tuple[int, CueEvent]]]:
        """Completed windows and cue changes ``(row, event)`` of the last :meth:`feed_chunk`
        that returned ``code``."""
        events: list[tuple[int, CueEvent]] = []
        if code & FED_EVENTS:
            cc = self._cue_cols
            for q in range(int(self._si[_I_NE])):
                r, c, d, a = self._ev[q]
                events.append((int(r), CueEvent(int(r), int(cc[c]), int(d), bool(a))))
        windows: list[WindowStats] = []
        if code & FED_WINDOW:
            m = self.m
            si = self._si
            upto = int(si[_I_N])
            dist = self.distance
            prog = self.progress
            while si[_I_WINNEXT] + m.win <= upto:
                s = int(si[_I_WINNEXT])
                ws = np.empty((len(m.names), 5))
                _stats(self._obs[s:s + m.win], m.lo, m.hi, ws)
                windows.append(WindowStats(s, m.win, ws,
                                           window_score_rows(self._weights, ws.tolist()),
                                           prog, dist))
                si[_I_WINNEXT] = s + m.win
        return windows, events

    def feed(self, poses: NDArray[np.floating], valid: NDArray[np.bool_],
             final: bool = False) -> tuple[list[WindowStats], list[tuple[int, CueEvent]]]:
        """Append samples (k, 7) with validity flags; return completed windows and cue
        changes as ``(row, event)``. ``final`` resolves a trailing gap (end of session)."""
        p = np.asarray(poses)
        v = np.asarray(valid)
        if p.ndim != 2 or p.shape[1] != 7 or v.shape != (p.shape[0],):
            raise ValueError(f"need poses (k, 7) and valid (k,), got {p.shape} and {v.shape}")
        ptol = self._sf[_F_PTOL]
        self._sf[_F_PTOL] = -1.0  # no period here: rows get no rig time
        try:
            code = self.feed_chunk(p.reshape(p.shape[0], 1, 7), v.reshape(v.shape[0], 1), 0,
                                   final=final)
        finally:
            self._sf[_F_PTOL] = ptol
        if code < 0:
            raise ValueError(f"chunk rejected (code {code})")
        return self.collect(code)

    def finish(self) -> SessionSummary:
        """Resolve trailing rows and compute the final result (same arithmetic as batch)."""
        self.feed(np.empty((0, 7)), np.empty(0, np.bool_), final=True)
        m = self.m
        n = self.rows
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
        misc = np.array([*q[:6], self.distance, int(self._si[_I_BLKUSED]),
                         int(self._si[_I_POS]), int(self._interp[:n].sum()),
                         int(self._ok[:n].sum()), runs, longest])
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
