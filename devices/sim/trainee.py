"""Streaming motion generator of one simulated trainee working through an exercise scene.

``TraineeMotion.generate(times)`` turns increasing session times (s) into tracker poses,
analog channels and validity flags, block by block, so cues received between blocks change
the motion that follows. Everything random comes from one seeded ``numpy`` generator, so a
(scene, skill, trackers, seed) tuple and the same sequence of time blocks and cues give the
same samples on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from devices.sim.geometry import (
    F64,
    cross,
    frame_from_axis,
    matrix_to_quat,
    path_from_scene,
    unit,
)
from devices.sim.skill import SkillModel

# deviation channels
ANG0, ANG1, ROLL, DIST, AIM, SPEED, WAMP, WPER = range(8)
N_CH = 8
#: Which channels a cue on a process parameter makes the trainee attend to. The names are
#: ``sim_kernels.parameters`` names (a test checks they stay in sync; devices may not
#: import the kernels).
CUE_CHANNELS: dict[str, tuple[int, ...]] = {
    "work_angle": (ANG0,), "travel_angle": (ANG1,), "ctwd": (DIST,), "travel_speed": (SPEED,),
    "aim_offset": (AIM,), "weave_amplitude": (WAMP,), "weave_period": (WPER,),
    "gun_distance": (DIST,), "gun_angle": (ANG0, ANG1), "gun_speed": (SPEED,),
    "pass_overlap": (AIM,),
}
#: Spray work is an order of magnitude coarser than welding (gun distance window ±50 mm vs
#: CTWD ±5 mm; a pass line wanders by centimetres), so the skill model's mm deviations are
#: scaled per channel for spray scenes; angles and relative speed keep their scale.
SPRAY_SCALE = np.array([1.5, 1.5, 1.0, 8.0, 10.0, 1.0, 1.0, 1.0])
#: Tracker names with a built-in behaviour; any other name is a body-worn tracker with sway.
KNOWN_TRACKERS = ("tool", "headset", "off_hand", "controller_left", "controller_right", "waist")
DEFAULT_TRACKERS = ("tool", "headset", "off_hand")
LOAD_TEST_TRACKERS = KNOWN_TRACKERS
#: Max samples per closed-form OU step: a**-k stays below e**2 for tau >= 0.25 s at 120 Hz.
_SUB = 64
_FREQ_WANDER_HZ = 0.3  # physiological tremor frequency wanders a few tenths of a Hz
_AMP_MOD = 0.25  # and its amplitude by about a quarter


@dataclass
class _Cue:
    onset: float
    k_on: float


@dataclass
class _Trace:
    """The state after each sample of the last generated block, so `TraineeMotion.rewind`
    can take back samples that were generated ahead but not handed out yet."""

    times: F64  # (n,) the block's session times
    state: F64  # (n, S) OU state after each sample
    s: F64  # (n,) arc length
    tremor_phase: F64  # (n, 5)
    weave_phase: F64 | None  # (n,) or None without weave
    pause_left: F64  # (n,)
    dropout_left: F64  # (n, T)
    time_in_pause: F64  # (n,) cumulative, including the time before the block
    end_time: float  # end_time before the block


def _ou_block(rng: np.random.Generator, x0: F64, a: F64, b: F64, n: int) -> F64:
    """n steps of x[k] = a*x[k-1] + b*w[k] per channel (exact, vectorised in sub-blocks)."""
    out = np.empty((n, x0.shape[0]))
    x = x0
    # a^j for j < _SUB as exp(j log a): one exp instead of a power per element (~4x cheaper)
    apow_all = np.exp(np.arange(min(_SUB, n), dtype=np.float64)[:, None] * np.log(a)[None, :])
    w_all = rng.standard_normal((n, x0.shape[0]))
    w_all *= b
    for lo in range(0, n, _SUB):
        m = min(_SUB, n - lo)
        apow = apow_all[:m]
        y = np.cumsum(w_all[lo:lo + m] / apow, axis=0)
        blk = out[lo:lo + m]
        np.multiply(apow, a * x + y, out=blk)
        x = blk[-1]
    return out


class TraineeMotion:
    """One trainee, one scene, one seed: generates samples for increasing times."""

    def __init__(self, scene: dict[str, Any], skill: SkillModel,
                 trackers: tuple[str, ...] = DEFAULT_TRACKERS, seed: int = 0) -> None:
        if "tool" not in trackers:
            raise ValueError("a simulated rig needs a 'tool' tracker")
        self.scene = scene
        self.skill = skill
        self.trackers = tuple(trackers)
        self.path = path_from_scene(scene)
        self.rng = np.random.default_rng(seed)
        tg = scene["targets"]
        self.kind = self.path.kind
        self.weld = self.kind != "spray_panel"
        if self.weld:
            self.angle0 = float(tg["work_angle_deg"])
            self.angle1 = float(tg["travel_angle_deg"])
            self.dist0 = float(tg["ctwd_mm"])
            self.speed0 = float(tg["travel_speed_mm_s"])
            self.weave_amp = float(tg.get("weave_amplitude_mm", 0.0))
            self.weave_per = float(tg.get("weave_period_s", 1.0))
        else:
            self.angle0 = 0.0
            self.angle1 = 0.0
            self.dist0 = float(tg["gun_distance_mm"])
            self.speed0 = float(tg["gun_speed_mm_s"])
            self.weave_amp = 0.0
            self.weave_per = 1.0
        tool = scene["tool"]
        self.tip_offset = np.asarray(tool["tip_offset_mm"], dtype=np.float64)
        timing = scene.get("timing", {})
        self.lead_in = float(timing.get("lead_in_s", 1.0))
        self.lead_out = float(timing.get("lead_out_s", 1.0))
        self.max_duration = float(timing.get("max_duration_s", 600.0))
        sk = skill
        sign = self.rng.choice([-1.0, 1.0], size=N_CH)
        mag = self.rng.uniform(0.5, 1.5, size=N_CH)
        bias = np.array([sk.angle_bias_deg, sk.angle_bias_deg, 0.0, sk.distance_bias_mm,
                         sk.aim_bias_mm, sk.speed_bias, sk.weave_bias, 0.5 * sk.weave_bias])
        noise = np.array([sk.angle_noise_deg, sk.angle_noise_deg, 2 * sk.angle_noise_deg,
                          sk.distance_noise_mm, sk.aim_noise_mm, sk.speed_cv, sk.weave_cv,
                          sk.weave_cv])
        drift = np.array([sk.angle_drift_deg, sk.angle_drift_deg, sk.angle_drift_deg,
                          sk.distance_drift_mm, sk.aim_drift_mm, sk.speed_drift, 0.0, 0.0])
        scale = np.ones(N_CH) if self.weld else SPRAY_SCALE
        bias, noise, drift = bias * scale, noise * scale, drift * scale
        self.bias = bias * sign * mag
        # state vector layout: noise(8) drift(8) tremor-freq(1) tremor-amp(1) sway(3 per extra)
        self.extras = tuple(t for t in self.trackers if t != "tool")
        n_sway = 3 * len(self.extras)
        self.sigma = np.concatenate([noise, drift, [_FREQ_WANDER_HZ, _AMP_MOD],
                                     np.ones(n_sway)])
        self.tau = np.concatenate([np.full(N_CH, sk.noise_tau_s), np.full(N_CH, sk.drift_tau_s),
                                   [0.5, 0.5], np.full(n_sway, 1.5)])
        self.state: F64 = np.asarray(self.rng.standard_normal(self.sigma.shape[0]))
        self.sway_scale = np.array([self._sway_mm(t) for t in self.extras])
        self.anchor = np.array([self._anchor(t) for t in self.extras]).reshape(-1, 3)
        self.tremor_phase = self.rng.uniform(0.0, 2 * math.pi, size=5)
        self.phase_offsets = self.rng.uniform(0.0, 2 * math.pi, size=5)
        self.weave_phase = 0.0
        self.s = 0.0
        self.t_last = -math.inf
        self.end_time = math.inf  # when the tip reached the end of the path
        self.pause_left = 0.0
        self.dropout_left = np.zeros(len(self.trackers))
        self.cues: list[list[_Cue]] = [[] for _ in range(N_CH)]
        self.time_in_pause = 0.0  # diagnostics: seconds of hesitation so far
        self.cue_count = 0  # diagnostics: cues acted on
        self._trace: _Trace | None = None  # per-sample state of the last block (for `rewind`)

    # --- scene anchors --------------------------------------------------------------
    def _stance(self) -> F64:
        body = self.scene.get("body", {})
        return np.asarray(body.get("headset_mm", [0.0, -450.0, 1600.0]), dtype=np.float64)

    def _anchor(self, name: str) -> F64:
        h = self._stance()
        off = {"headset": (0, 0, 0), "waist": (0, -60, -620), "off_hand": (-260, 330, -560),
               "controller_left": (-320, 150, -480), "controller_right": (320, 150, -480)}
        body = self.scene.get("body", {})
        if name == "off_hand" and "off_hand_mm" in body:
            return np.asarray(body["off_hand_mm"], dtype=np.float64)
        return h + np.asarray(off.get(name, (0, -40, -300)), dtype=np.float64)

    @staticmethod
    def _sway_mm(name: str) -> float:
        return {"headset": 12.0, "waist": 8.0, "off_hand": 3.0}.get(name, 10.0)

    # --- cues -------------------------------------------------------------------------
    def _k(self, ch: int, t: F64) -> F64:
        """Correction level of channel ``ch`` at times ``t`` (0 = uncorrected)."""
        k = np.zeros_like(t)
        sk = self.skill
        for cue in self.cues[ch]:
            d = t - cue.onset
            on = d >= 0.0
            dd = d[on]
            k[on] = (sk.correction_gain - (sk.correction_gain - cue.k_on)
                     * np.exp(-dd / sk.correction_tau_s)) * np.exp(-dd / sk.relapse_tau_s)
        return k

    def cue(self, parameter: str, at: float) -> bool:
        """The trainee hears a cue about ``parameter`` at session time ``at``.

        Returns False for a parameter this simulation does not react to.
        """
        chans = CUE_CHANNELS.get(parameter)
        if chans is None:
            return False
        # samples up to t_last exist already: a cue cannot change them
        onset = max(at + self.skill.reaction_s, self.t_last + 1e-9)
        for ch in chans:
            k_now = float(self._k(ch, np.array([onset]))[0])
            # a cue arriving while the previous one is still being acted on does not restart
            lst = [c for c in self.cues[ch] if c.onset < onset][-3:]
            lst.append(_Cue(onset, k_now))
            self.cues[ch] = lst
        self.cue_count += 1
        return True

    # --- generation -------------------------------------------------------------------
    @property
    def finished_at(self) -> float:
        """Session time at which the exercise is over: the end of the path plus the lead-out,
        or the scene's ``max_duration_s`` for a trainee who never gets there (inf until one
        of them is known)."""
        return min(self.end_time + self.lead_out, self.max_duration)

    def generate(self, times: F64) -> tuple[NDArray[np.float32], NDArray[np.float32],
                                            NDArray[np.bool_]]:
        """Poses (n, T, 7) float32, analog (n, 1) float32 [trigger], valid (n, T) for
        strictly increasing session times (s) later than any time generated before."""
        times = np.asarray(times, dtype=np.float64)
        n = times.shape[0]
        nt = len(self.trackers)
        if n == 0:
            return (np.zeros((0, nt, 7), np.float32), np.zeros((0, 1), np.float32),
                    np.zeros((0, nt), bool))
        if times[0] <= self.t_last:
            raise ValueError("times must increase across calls")
        sk = self.skill
        prev = self.t_last if math.isfinite(self.t_last) else times[0] - (
            times[1] - times[0] if n > 1 else 1.0 / 120.0)
        dt = np.diff(np.concatenate([[prev], times]))
        dt_mean = float(dt.mean())
        a: F64 = np.exp(-dt_mean / self.tau)
        st = _ou_block(self.rng, self.state, a, np.sqrt(1.0 - a * a), n)
        self.state = st[-1].copy()
        sig = self.sigma
        noise = st[:, :N_CH] * sig[:N_CH]
        drift = st[:, N_CH:2 * N_CH] * sig[N_CH:2 * N_CH]
        slow = self.bias[None, :] + drift
        for ch in range(N_CH):
            if self.cues[ch]:
                slow[:, ch] *= 1.0 - self._k(ch, times)
        dev = noise + slow

        # travel: speed with hesitations, arc length, trigger
        moving = times >= self.lead_in
        gate = np.ones(n)
        pause_left = np.full(n, self.pause_left)
        end_before = self.end_time
        if sk.hesitation_per_min > 0.0:
            rate = sk.hesitation_per_min / 60.0
            starts = self.rng.random(n) < rate * dt
            if self.pause_left > 0.0 or starts.any():
                # per-sample state machine on Python lists (numpy scalar indexing costs ~5x)
                dt_l, st_l, mv_l, t_l = dt.tolist(), starts.tolist(), moving.tolist(), times.tolist()
                gate_l, left_l = [1.0] * n, [0.0] * n
                left = self.pause_left
                for i in range(n):
                    if left > 0.0:
                        gate_l[i] = 0.0
                        left -= dt_l[i]
                    elif st_l[i] and mv_l[i] and t_l[i] < self.end_time:
                        left = float(self.rng.exponential(sk.hesitation_s))
                        gate_l[i] = 0.0
                    left_l[i] = left
                self.pause_left = left
                gate = np.array(gate_l)
                pause_left = np.array(left_l)
        paused = np.cumsum(dt * ((gate == 0.0) & moving)) + self.time_in_pause
        self.time_in_pause = float(paused[-1])
        v = self.speed0 * np.maximum(0.05, 1.0 + dev[:, SPEED]) * gate * moving
        s = self.s + np.cumsum(v * dt)
        length = self.path.length
        if s[-1] >= length and not math.isfinite(self.end_time):
            first = int(np.argmax(s >= length))
            self.end_time = float(times[first])
        s = np.minimum(s, length)
        self.s = float(s[-1])
        target, tdir, active = self.path.locate(s)
        working = active & moving & (times < self.end_time)
        normal = np.broadcast_to(self.path.normal, target.shape)
        right = unit(cross(tdir, normal))  # right of travel, in the work plane

        # physiological tremor: shared wandering frequency, per-axis phase
        f = (self.skill.tremor_hz + st[:, 2 * N_CH] * _FREQ_WANDER_HZ).clip(8.0, 12.0)
        phase = self.tremor_phase[None, :] + 2 * math.pi * np.cumsum(f * dt)[:, None]
        self.tremor_phase = phase[-1] % (2 * math.pi)
        wph: F64 | None = None
        amp = (1.0 + _AMP_MOD * st[:, 2 * N_CH + 1]) / math.sqrt(1.0 + _AMP_MOD**2)
        trem = math.sqrt(2.0) * np.sin(phase + self.phase_offsets) * amp[:, None]
        dev[:, ANG0] += trem[:, 3] * sk.tremor_deg
        dev[:, ANG1] += trem[:, 4] * sk.tremor_deg

        # tool axis (handle -> tip) from the angles
        if self.weld:
            wa = np.radians(self.angle0 + dev[:, ANG0])
            ta = np.radians(self.angle1 + dev[:, ANG1])
            perp = (np.cos(wa)[:, None] * self.path.approach[None, :]
                    - np.sin(wa)[:, None] * normal)
            axis = np.cos(ta)[:, None] * perp + np.sin(ta)[:, None] * tdir
        else:
            axis = unit(self.path.approach[None, :]
                        + np.tan(np.radians(dev[:, ANG0]))[:, None] * right
                        + np.tan(np.radians(dev[:, ANG1]))[:, None] * tdir)
        lateral = dev[:, AIM].copy()
        if self.weave_amp > 0.0:
            wstep = 2 * math.pi * dt * (gate * moving) / (self.weave_per
                                                          * np.maximum(0.3, 1.0 + dev[:, WPER]))
            wph = self.weave_phase + np.cumsum(wstep)
            self.weave_phase = float(wph[-1] % (2 * math.pi))
            wamp = self.weave_amp * np.maximum(0.0, 1.0 + dev[:, WAMP])
            lateral += wamp * np.sin(wph) * working
        dist = np.maximum(1.0, self.dist0 + dev[:, DIST])
        # The hand pivots the tool about its tip (the tip stays near the work while the
        # angles wander), so the tip sits at the nominal stand-off along the *nominal* axis.
        nominal = self._nominal_axis(tdir)
        # sideways as seen down the torch (the kernels' aim direction: axis x travel)
        side = unit(cross(nominal, tdir)) if self.weld else right
        tip = target + lateral[:, None] * side - dist[:, None] * nominal
        tip += trem[:, :3] * sk.tremor_mm
        rot = frame_from_axis(axis, tdir)
        roll = np.radians(dev[:, ROLL])
        c, sn = np.cos(roll)[:, None], np.sin(roll)[:, None]
        x_r = c * rot[:, :, 0] + sn * rot[:, :, 1]
        y_r = -sn * rot[:, :, 0] + c * rot[:, :, 1]
        rot = np.stack([x_r, y_r, rot[:, :, 2]], axis=-1)
        tracker_pos = tip - rot @ self.tip_offset

        poses = np.empty((n, nt, 7))
        poses[:, 0, :3] = tracker_pos
        poses[:, 0, 3:] = matrix_to_quat(rot)
        if self.extras:
            self._extras(poses, st, tip)
        if sk.tracking_noise_mm > 0.0:
            poses[:, :, :3] += self.rng.normal(0.0, sk.tracking_noise_mm, size=(n, nt, 3))
        valid, drop_left = self._dropouts(dt)
        poses = self._blank_invalid(poses, valid)
        analog = working.astype(np.float32)[:, None]
        self.t_last = float(times[-1])
        self._trace = _Trace(times, st, s, phase, wph, pause_left, drop_left, paused, end_before)
        return poses.astype(np.float32), analog, valid

    def rewind(self, keep: int) -> None:
        """Take back all but the first ``keep`` samples of the last `generate` call: the state
        becomes the one right after sample ``keep - 1``, so the next call continues from there.

        A rig generating ahead calls this when a cue arrives, so that every sample after the
        cue's onset is generated knowing the cue (the cue model is unchanged). Random draws
        continue from the generator's current state: same seed and same cue times, same
        samples.
        """
        tr = self._trace
        if tr is None:
            raise ValueError("nothing generated to rewind")
        n = tr.times.shape[0]
        if not 1 <= keep <= n:
            raise ValueError(f"can keep 1..{n} samples of the last block, not {keep}")
        i = keep - 1
        self.state = tr.state[i].copy()
        self.s = float(tr.s[i])
        self.tremor_phase = tr.tremor_phase[i] % (2 * math.pi)
        if tr.weave_phase is not None:
            self.weave_phase = float(tr.weave_phase[i] % (2 * math.pi))
        self.pause_left = float(tr.pause_left[i])
        self.dropout_left = tr.dropout_left[i].copy()
        self.time_in_pause = float(tr.time_in_pause[i])
        self.t_last = float(tr.times[i])
        if self.end_time > self.t_last:
            self.end_time = tr.end_time if tr.end_time <= self.t_last else math.inf
        self._trace = _Trace(tr.times[:keep], tr.state[:keep], tr.s[:keep],
                             tr.tremor_phase[:keep],
                             None if tr.weave_phase is None else tr.weave_phase[:keep],
                             tr.pause_left[:keep], tr.dropout_left[:keep],
                             tr.time_in_pause[:keep], tr.end_time)

    def _nominal_axis(self, tdir: F64) -> F64:
        if not self.weld:
            return np.broadcast_to(self.path.approach, tdir.shape)
        wa, ta = math.radians(self.angle0), math.radians(self.angle1)
        perp = math.cos(wa) * self.path.approach - math.sin(wa) * self.path.normal
        return math.cos(ta) * perp[None, :] + math.sin(ta) * tdir

    def _extras(self, poses: F64, st: F64, tip: F64) -> None:
        ne = len(self.extras)
        sway = st[:, 2 * N_CH + 2:].reshape(-1, ne, 3) * self.sway_scale[None, :, None]
        start = self.path.segments[0].start
        follow = (tip - start)[:, None, :] * 0.5  # head and body follow the work halfway
        follow[:, :, 2] = 0.0
        pos = self.anchor[None, :, :] + follow + sway
        up = np.array([0.0, 0.0, 1.0])
        for i, name in enumerate(self.extras):
            col = 1 + i
            poses[:, col, :3] = pos[:, i]
            if name == "headset":
                # OpenXR view convention: the headset looks along its -Z, +Y up
                look = unit(tip - pos[:, i])
                rot = frame_from_axis(-look, cross(np.broadcast_to(up, look.shape), -look))
                poses[:, col, 3:] = matrix_to_quat(rot)
            else:
                poses[:, col, 3:] = (0.0, 0.0, 0.0, 1.0)

    def _dropouts(self, dt: F64) -> tuple[NDArray[np.bool_], F64]:
        """Validity (n, T) and the dropout time left per tracker after each sample (n, T)."""
        n, nt = dt.shape[0], len(self.trackers)
        valid = np.ones((n, nt), dtype=bool)
        left = self.dropout_left
        hist = np.empty((n, nt))
        hist[:] = left
        sk = self.skill
        rate = sk.dropout_per_min / 60.0
        if rate <= 0.0:
            return valid, hist
        starts = self.rng.random((n, nt)) < rate * dt[:, None]
        dt_l: list[float] | None = None
        for j in range(nt):
            if left[j] <= 0.0 and not starts[:, j].any():
                continue
            # per-sample state machine on Python lists (numpy scalar indexing costs ~5x)
            dt_l = dt.tolist() if dt_l is None else dt_l
            st_l = starts[:, j].tolist()
            ok_l, left_l = [True] * n, [0.0] * n
            lj = float(left[j])
            for i in range(n):
                if lj > 0.0:
                    ok_l[i] = False
                    lj -= dt_l[i]
                elif st_l[i]:
                    lj = float(self.rng.exponential(sk.dropout_s))
                    ok_l[i] = False
                    lj -= dt_l[i]
                left_l[i] = lj
            left[j] = lj
            valid[:, j] = ok_l
            hist[:, j] = left_l
        return valid, hist

    @staticmethod
    def _blank_invalid(poses: F64, valid: NDArray[np.bool_]) -> F64:
        """A lost tracker's pose row holds NaN (the protocol's tracking-loss marker)."""
        if not valid.all():
            poses[~valid] = np.nan
        return poses
