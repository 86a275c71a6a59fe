"""Numba kernels of the simulated trainee (`devices.sim.trainee.TraineeMotion.generate`).

The per-sample work of a block (OU recursion, cue levels, travel, tremor, weave, tool and
body frames, quaternions, tracking noise, dropout blanking) runs in one compiled loop; the
numpy version paid ~1 ms of call overhead per block plus ~5 us per sample.

Determinism: every random number is drawn by the caller from its seeded numpy Generator in the
same order as before and passed in, so the stream never depends on numba's RNG. No fastmath
(IEEE semantics, source order of operations, no fused multiply-add): the same inputs give the
same bits whether the code was compiled now or loaded from the on-disk cache. The arithmetic
follows the former numpy expressions operation by operation, so float32 outputs match them
(libm vs numpy's SIMD exp/sin may differ in the last float64 bit, far below float32).

The kernels are few and compiled once per process (``cache=True``: the first process writes
the cache next to this file, later ones load it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba as nb
import numpy as np

_F = TypeVar("_F", bound=Callable[..., Any])

#: IEEE arithmetic (no fastmath), on-disk cache, numpy error model (x/0 -> inf, no raise).
_JIT: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


def _jit(fn: _F) -> _F:
    return cast(_F, nb.njit(**_JIT)(fn))


def _inline(fn: _F) -> _F:
    """A helper inlined into its callers (numba IR), so the hot loop makes no calls."""
    return cast(_F, nb.njit(inline="always", **_JIT)(fn))


# layout of the scalar parameter vector `par` (built once per TraineeMotion)
P_WELD, P_ANGLE0, P_ANGLE1, P_DIST0, P_SPEED0, P_WEAVE_AMP, P_WEAVE_PER, P_LEAD_IN = range(8)
P_LENGTH, P_TREMOR_HZ, P_TREMOR_DEG, P_TREMOR_MM, P_GAIN, P_CTAU, P_RTAU = range(8, 15)
P_COS_TA0, P_SIN_TA0, P_FREQ_WANDER, P_AMP_MOD, P_AMP_NORM, P_TRACK_NOISE = range(15, 21)
N_PAR = 21
# rows of the (5, 3) vector table `vec3`
V_APPROACH, V_NORMAL, V_PERP0, V_TIP_OFFSET, V_START = range(5)
# columns of the per-segment table (S, 8): start xyz, unit direction xyz, arc length at start,
# active flag
# columns of the per-extra-tracker table (E, 5): sway scale, anchor xyz, 1.0 if headset
# columns of the cue table (8, 9): count, onsets[4], k_on[4] (the last 4 cues per channel)
MAX_CUES = 4
_TWO_PI = 2 * math.pi
_DEG = math.pi / 180.0  # numpy's radians(x) is x * (pi / 180)
_SQRT2 = math.sqrt(2.0)


@_jit
def renewal(u: Any, rate: float, dt: Any, t: Any, t_lo: float, t_hi: float, sub: bool,
            left: Any, on: Any, hist: Any, j0: int, i0: int, fresh: bool, draw: float
            ) -> tuple[int, int]:
    """On/off state machine of per-column renewal events (hesitations, tracking loss).

    An event starts at sample i of column j where ``u[i, j] < rate * dt[i]`` and
    ``t_lo <= t[i] < t_hi`` while none is running; it lasts an exponential time drawn by the
    caller: the kernel returns ``(j, i)`` when it needs one, and the caller calls again with
    ``j0, i0 = j, i``, ``fresh=True`` and the ``draw`` (the draws stay in the caller's numpy
    stream, in sample order). ``sub``: the start sample already uses up its dt (dropouts).
    Writes ``on`` (set on the first call; False while an event runs), ``hist`` (time left
    after each sample) and ``left`` (time left after the block); returns ``(-1, -1)`` when
    done.
    """
    n, m = u.shape
    if j0 == 0 and i0 == 0 and not fresh:
        on[:, :] = True
    for j in range(j0, m):
        lj = left[j]
        i = 0
        if j == j0:
            i = i0
            if fresh:
                lj = draw
                on[i, j] = False
                if sub:
                    lj -= dt[i]
                hist[i, j] = lj
                i += 1
        while i < n:
            if lj > 0.0:
                on[i, j] = False
                lj -= dt[i]
            elif u[i, j] < rate * dt[i] and t[i] >= t_lo and t[i] < t_hi:
                left[j] = lj
                return j, i
            hist[i, j] = lj
            i += 1
        left[j] = lj
    return -1, -1


@_inline
def pose_row(out: Any, noise: Any, jitter: float, valid: Any, i: int, j: int,
             p0: float, p1: float, p2: float, x0: float, x1: float, x2: float,
             y0: float, y1: float, y2: float, z0: float, z1: float, z2: float) -> None:
    """``out[i, j]`` (float32): position plus tracking jitter, and the unit quaternion (scalar
    last, qw >= 0; geometry.matrix_to_quat's branch-free form) of the rotation with columns
    x, y, z; NaN for a lost tracker (the protocol's tracking-loss marker)."""
    if not valid[i, j]:
        for q in range(7):
            out[i, j, q] = np.nan
        return
    if noise.shape[0] > 0:
        p0 += noise[i, j, 0] * jitter
        p1 += noise[i, j, 1] * jitter
        p2 += noise[i, j, 2] * jitter
    out[i, j, 0] = p0
    out[i, j, 1] = p1
    out[i, j, 2] = p2
    # r00 = x0, r11 = y1, r22 = z2; r21 = y2, r12 = z1; r02 = z0, r20 = x2; r10 = x1, r01 = y0
    qw = math.sqrt(max(1.0 + x0 + y1 + z2, 0.0)) * 0.5
    qx = math.sqrt(max(1.0 + x0 - y1 - z2, 0.0)) * 0.5
    qy = math.sqrt(max(1.0 - x0 + y1 - z2, 0.0)) * 0.5
    qz = math.sqrt(max(1.0 - x0 - y1 + z2, 0.0)) * 0.5
    qx = math.copysign(qx, y2 - z1)
    qy = math.copysign(qy, z0 - x2)
    qz = math.copysign(qz, x1 - y0)
    nq = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    out[i, j, 3] = qx / nq
    out[i, j, 4] = qy / nq
    out[i, j, 5] = qz / nq
    out[i, j, 6] = qw / nq


@_inline
def unit_cross(a0: float, a1: float, a2: float, b0: float, b1: float, b2: float
               ) -> tuple[float, float, float]:
    """unit(a x b); a zero-length product stays unscaled."""
    cx = a1 * b2 - a2 * b1
    cy = a2 * b0 - a0 * b2
    cz = a0 * b1 - a1 * b0
    nn = math.sqrt(cx * cx + cy * cy + cz * cz)
    nn = nn if nn > 0.0 else 1.0
    return cx / nn, cy / nn, cz / nn


@_inline
def frame_from_axis(a0: float, a1: float, a2: float, r0: float, r1: float, r2: float
                    ) -> tuple[float, float, float, float, float, float, float, float, float]:
    """Columns x, y, z of a rotation with z = unit(a), x = unit(r - (r.z) z), y = z x x
    (geometry.frame_from_axis; a zero-length vector stays unscaled)."""
    nn = math.sqrt(a0 * a0 + a1 * a1 + a2 * a2)
    nn = nn if nn > 0.0 else 1.0
    z0, z1, z2 = a0 / nn, a1 / nn, a2 / nn
    dot = r0 * z0 + r1 * z1 + r2 * z2
    x0 = r0 - dot * z0
    x1 = r1 - dot * z1
    x2 = r2 - dot * z2
    nn = math.sqrt(x0 * x0 + x1 * x1 + x2 * x2)
    nn = nn if nn > 0.0 else 1.0
    x0, x1, x2 = x0 / nn, x1 / nn, x2 / nn
    return x0, x1, x2, z1 * x2 - z2 * x1, z2 * x0 - z0 * x2, z0 * x1 - z1 * x0, z0, z1, z2


@_jit
def motion(times: Any, dt: Any, gate: Any, w: Any, a: Any, b: Any, apow: Any, x0: Any,
           sig: Any, bias: Any, cues: Any, par: Any, vec3: Any, seg: Any, extras: Any,
           tphase0: Any, phase_off: Any, noise: Any, valid: Any, s0: float, wph0: float,
           pause0: float, end0: float
           ) -> tuple[Any, Any, Any, Any, Any, Any, Any, float]:
    """One block of samples: (poses f32 (n, T, 7), analog f32 (n, 1), OU state (n, S),
    arc length (n,), tremor phase (n, 5), weave phase (n,), cumulative pause (n,), end time).

    ``w``: standard normals (n, S) of the OU steps x[k] = a x[k-1] + b w[k] (a, b: (S,)),
    computed in closed form per sub-block of ``apow.shape[0]`` samples as the former numpy
    code did (``apow[j] = a**j``; same bits, so the exercises' expert traces stay
    byte-identical); ``noise``: standard normals of the tracking jitter
    (n, T, 3), or (0, T, 3) without; ``valid``: (n, T) from `renewal`; ``gate``: (n, 1) from
    `renewal` (False during a hesitation), or (0, 1) without hesitations.
    """
    n = times.shape[0]
    ns = x0.shape[0]
    nt = valid.shape[1]
    ne = extras.shape[0]
    # --- OU state, every channel
    st = np.empty((n, ns))
    ax = np.empty(ns)
    y = np.empty(ns)
    for c in range(ns):
        ax[c] = a[c] * x0[c]
    lo = 0
    while lo < n:
        hi = min(lo + apow.shape[0], n)
        y[:] = 0.0
        for k in range(lo, hi):
            # channels innermost: contiguous, vectorised by LLVM; each channel in sample order
            for c in range(ns):
                p = apow[k - lo, c]
                y[c] += (w[k, c] * b[c]) / p
                st[k, c] = p * (ax[c] + y[c])
        for c in range(ns):
            ax[c] = a[c] * st[hi - 1, c]
        lo = hi

    weld = par[P_WELD] != 0.0
    angle0 = par[P_ANGLE0]
    angle1 = par[P_ANGLE1]
    dist0 = par[P_DIST0]
    speed0 = par[P_SPEED0]
    weave_amp = par[P_WEAVE_AMP]
    weave_per = par[P_WEAVE_PER]
    lead_in = par[P_LEAD_IN]
    length = par[P_LENGTH]
    gain = par[P_GAIN]
    ctau = par[P_CTAU]
    rtau = par[P_RTAU]
    cta0 = par[P_COS_TA0]
    sta0 = par[P_SIN_TA0]
    amp_mod = par[P_AMP_MOD]
    amp_norm = par[P_AMP_NORM]
    ap0, ap1, ap2 = vec3[V_APPROACH, 0], vec3[V_APPROACH, 1], vec3[V_APPROACH, 2]
    nm0, nm1, nm2 = vec3[V_NORMAL, 0], vec3[V_NORMAL, 1], vec3[V_NORMAL, 2]
    pp0, pp1, pp2 = vec3[V_PERP0, 0], vec3[V_PERP0, 1], vec3[V_PERP0, 2]
    of0, of1, of2 = vec3[V_TIP_OFFSET, 0], vec3[V_TIP_OFFSET, 1], vec3[V_TIP_OFFSET, 2]
    sg = seg.shape[0]
    no_gate = gate.shape[0] == 0
    # tremor: sin(phase0_q + wander + offset_q) = sin(c_q) cos(wander) + cos(c_q) sin(wander),
    # one sin/cos pair per sample instead of five sines (equal to ~1e-16 of the amplitude)
    tc = np.empty(5)
    ts = np.empty(5)
    for q in range(5):
        tc[q] = math.cos(tphase0[q] + phase_off[q])
        ts[q] = math.sin(tphase0[q] + phase_off[q])

    jitter = par[P_TRACK_NOISE]
    poses = np.empty((n, nt, 7), dtype=np.float32)
    analog = np.empty((n, 1), dtype=np.float32)
    s_out = np.empty(n)
    phase = np.empty((n, 5))
    wph = np.empty(n)
    paused = np.empty(n)
    dev = np.empty(8)
    trem = np.empty(5)
    acc_pause = 0.0
    acc_s = 0.0
    acc_f = 0.0
    acc_w = 0.0
    end = end0
    idx = 0
    for i in range(n):
        t = times[i]
        d_t = dt[i]
        # deviations: noise + (bias + drift) * (1 - k(t))
        for ch in range(8):
            slow = bias[ch] + st[i, 8 + ch] * sig[8 + ch]
            nc = int(cues[ch, 0])
            if nc > 0:
                kc = 0.0
                for q in range(nc):
                    dd = t - cues[ch, 1 + q]
                    if dd >= 0.0:
                        kc = ((gain - (gain - cues[ch, 1 + MAX_CUES + q]) * math.exp(-dd / ctau))
                             * math.exp(-dd / rtau))
                slow *= 1.0 - kc
            dev[ch] = st[i, ch] * sig[ch] + slow
        # travel
        mv = 1.0 if t >= lead_in else 0.0
        g = 1.0 if (no_gate or gate[i, 0]) else 0.0
        acc_pause += d_t * (1.0 if (g == 0.0 and mv != 0.0) else 0.0)
        paused[i] = acc_pause + pause0
        v = speed0 * max(0.05, 1.0 + dev[5]) * g * mv
        acc_s += v * d_t
        s = s0 + acc_s
        if s >= length and not math.isfinite(end):
            end = t
        s = min(s, length)
        s_out[i] = s
        sc = min(max(s, 0.0), length)
        while idx + 1 < sg and seg[idx + 1, 6] <= sc:
            idx += 1
        td0, td1, td2 = seg[idx, 3], seg[idx, 4], seg[idx, 5]
        r = sc - seg[idx, 6]
        tg0 = seg[idx, 0] + td0 * r
        tg1 = seg[idx, 1] + td1 * r
        tg2 = seg[idx, 2] + td2 * r
        working = seg[idx, 7] != 0.0 and mv != 0.0 and t < end
        # right of travel: unit(tdir x normal)
        rx, ry, rz = unit_cross(td0, td1, td2, nm0, nm1, nm2)
        # physiological tremor
        f = min(max(par[P_TREMOR_HZ] + st[i, 16] * par[P_FREQ_WANDER], 8.0), 12.0)
        acc_f += f * d_t
        tw = _TWO_PI * acc_f
        amp = (1.0 + amp_mod * st[i, 17]) / amp_norm
        cw_, sw_ = math.cos(tw), math.sin(tw)
        for q in range(5):
            phase[i, q] = tphase0[q] + tw
            trem[q] = _SQRT2 * (ts[q] * cw_ + tc[q] * sw_) * amp
        dev[0] += trem[3] * par[P_TREMOR_DEG]
        dev[1] += trem[4] * par[P_TREMOR_DEG]
        # tool axis (handle -> tip)
        if weld:
            wa = (angle0 + dev[0]) * _DEG
            ta = (angle1 + dev[1]) * _DEG
            cw, sw = math.cos(wa), math.sin(wa)
            q0 = cw * ap0 - sw * nm0
            q1 = cw * ap1 - sw * nm1
            q2 = cw * ap2 - sw * nm2
            ct, stt = math.cos(ta), math.sin(ta)
            ax0 = ct * q0 + stt * td0
            ax1 = ct * q1 + stt * td1
            ax2 = ct * q2 + stt * td2
        else:
            ta0 = math.tan(dev[0] * _DEG)
            ta1 = math.tan(dev[1] * _DEG)
            ax0 = (ap0 + ta0 * rx) + ta1 * td0
            ax1 = (ap1 + ta0 * ry) + ta1 * td1
            ax2 = (ap2 + ta0 * rz) + ta1 * td2
            nn = math.sqrt(ax0 * ax0 + ax1 * ax1 + ax2 * ax2)
            nn = nn if nn > 0.0 else 1.0
            ax0, ax1, ax2 = ax0 / nn, ax1 / nn, ax2 / nn
        lateral = dev[2 + 2]  # AIM
        if weave_amp > 0.0:
            wstep = (_TWO_PI * d_t) * (g * mv) / (weave_per * max(0.3, 1.0 + dev[7]))
            acc_w += wstep
            wp = wph0 + acc_w
            wph[i] = wp
            wamp = weave_amp * max(0.0, 1.0 + dev[6])
            lateral += wamp * math.sin(wp) * (1.0 if working else 0.0)
        else:
            wph[i] = wph0
        dist = max(1.0, dist0 + dev[3])
        # the tip sits at the nominal stand-off along the nominal axis
        if weld:
            no0 = cta0 * pp0 + sta0 * td0
            no1 = cta0 * pp1 + sta0 * td1
            no2 = cta0 * pp2 + sta0 * td2
            sx, sy, sz = unit_cross(no0, no1, no2, td0, td1, td2)
        else:
            no0, no1, no2 = ap0, ap1, ap2
            sx, sy, sz = rx, ry, rz
        tip0 = (tg0 + lateral * sx) - dist * no0
        tip1 = (tg1 + lateral * sy) - dist * no1
        tip2 = (tg2 + lateral * sz) - dist * no2
        tip0 += trem[0] * par[P_TREMOR_MM]
        tip1 += trem[1] * par[P_TREMOR_MM]
        tip2 += trem[2] * par[P_TREMOR_MM]
        # frame: z = unit(axis), x = unit(tdir - (tdir.z) z), y = z x x; then roll about z
        x0_, x1_, x2_, y0_, y1_, y2_, z0, z1, z2 = frame_from_axis(ax0, ax1, ax2, td0, td1, td2)
        roll = dev[2] * _DEG
        cr, sn = math.cos(roll), math.sin(roll)
        xr0, xr1, xr2 = cr * x0_ + sn * y0_, cr * x1_ + sn * y1_, cr * x2_ + sn * y2_
        yr0, yr1, yr2 = -sn * x0_ + cr * y0_, -sn * x1_ + cr * y1_, -sn * x2_ + cr * y2_
        # tracker = tip - R @ tip_offset
        pose_row(poses, noise, jitter, valid, i, 0,
                 tip0 - (xr0 * of0 + yr0 * of1 + z0 * of2),
                 tip1 - (xr1 * of0 + yr1 * of1 + z1 * of2),
                 tip2 - (xr2 * of0 + yr2 * of1 + z2 * of2),
                 xr0, xr1, xr2, yr0, yr1, yr2, z0, z1, z2)
        # body-worn trackers: anchor + half of the tip's horizontal travel + sway
        fo0 = (tip0 - vec3[V_START, 0]) * 0.5
        fo1 = (tip1 - vec3[V_START, 1]) * 0.5
        for e in range(ne):
            col = 1 + e
            scale = extras[e, 0]
            p0 = (extras[e, 1] + fo0) + st[i, 18 + 3 * e] * scale
            p1 = (extras[e, 2] + fo1) + st[i, 19 + 3 * e] * scale
            p2 = (extras[e, 3] + 0.0) + st[i, 20 + 3 * e] * scale
            if extras[e, 4] != 0.0:
                # headset (OpenXR: looks along its -Z, +Y up): frame_from_axis(-look, up x -look)
                l0, l1, l2 = tip0 - p0, tip1 - p1, tip2 - p2
                nn = math.sqrt(l0 * l0 + l1 * l1 + l2 * l2)
                nn = nn if nn > 0.0 else 1.0
                m0, m1, m2 = -(l0 / nn), -(l1 / nn), -(l2 / nn)
                h0 = 0.0 * m2 - 1.0 * m1
                h1 = 1.0 * m0 - 0.0 * m2
                h2 = 0.0 * m1 - 0.0 * m0
                hx0, hx1, hx2, hy0, hy1, hy2, hz0, hz1, hz2 = frame_from_axis(m0, m1, m2,
                                                                              h0, h1, h2)
                pose_row(poses, noise, jitter, valid, i, col, p0, p1, p2, hx0, hx1, hx2,
                         hy0, hy1, hy2, hz0, hz1, hz2)
            else:
                pose_row(poses, noise, jitter, valid, i, col, p0, p1, p2,
                         1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        analog[i, 0] = 1.0 if working else 0.0
    return poses, analog, st, s_out, phase, wph, paused, end
