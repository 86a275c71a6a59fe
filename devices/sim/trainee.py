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

from devices.sim import kernels as K
from devices.sim.geometry import F64, path_from_scene
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
#: j = 0 .. _SUB - 1 as a column, for a**j = exp(j log a) of the OU sub-blocks
_J = np.arange(_SUB, dtype=np.float64)[:, None]
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
        self._tables()

    def _tables(self) -> None:
        """Constant inputs of the `devices.sim.kernels.motion` kernel (built once)."""
        sk, path = self.skill, self.path
        wa, ta = math.radians(self.angle0), math.radians(self.angle1)
        perp0 = math.cos(wa) * path.approach - math.sin(wa) * path.normal
        par = np.zeros(K.N_PAR)
        par[K.P_WELD] = 1.0 if self.weld else 0.0
        par[K.P_ANGLE0], par[K.P_ANGLE1] = self.angle0, self.angle1
        par[K.P_DIST0], par[K.P_SPEED0] = self.dist0, self.speed0
        par[K.P_WEAVE_AMP], par[K.P_WEAVE_PER] = self.weave_amp, self.weave_per
        par[K.P_LEAD_IN], par[K.P_LENGTH] = self.lead_in, path.length
        par[K.P_TREMOR_HZ], par[K.P_TREMOR_DEG] = sk.tremor_hz, sk.tremor_deg
        par[K.P_TREMOR_MM] = sk.tremor_mm
        par[K.P_GAIN], par[K.P_CTAU] = sk.correction_gain, sk.correction_tau_s
        par[K.P_RTAU] = sk.relapse_tau_s
        par[K.P_COS_TA0], par[K.P_SIN_TA0] = math.cos(ta), math.sin(ta)
        par[K.P_FREQ_WANDER], par[K.P_AMP_MOD] = _FREQ_WANDER_HZ, _AMP_MOD
        par[K.P_AMP_NORM] = math.sqrt(1.0 + _AMP_MOD**2)
        par[K.P_TRACK_NOISE] = sk.tracking_noise_mm
        self._par = par
        self._vec3 = np.stack([path.approach, path.normal, perp0, self.tip_offset,
                               path.segments[0].start]).astype(np.float64)
        self._seg = np.concatenate([path.starts, path.dirs, path.cum[:-1, None],
                                    path.act[:, None].astype(np.float64)], axis=1)
        ne = len(self.extras)
        ext = np.zeros((ne, 5))
        if ne:
            ext[:, 0] = self.sway_scale
            ext[:, 1:4] = self.anchor
            ext[:, 4] = [1.0 if name == "headset" else 0.0 for name in self.extras]
        self._ext = ext
        self._cue_tab = np.zeros((N_CH, 1 + 2 * K.MAX_CUES))
        self._no_noise = np.zeros((0, len(self.trackers), 3))
        self._no_gate = np.zeros((0, 1), dtype=bool)

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
            row = self._cue_tab[ch]
            row[0] = len(lst)
            row[1:1 + len(lst)] = [c.onset for c in lst]
            row[1 + K.MAX_CUES:1 + K.MAX_CUES + len(lst)] = [c.k_on for c in lst]
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
        dt = np.empty(n)
        dt[0] = times[0] - prev
        np.subtract(times[1:], times[:-1], out=dt[1:])
        # Random draws in a fixed order from the one seeded generator (the kernels draw none):
        # OU steps, hesitation starts and lengths, tracking jitter, dropout starts and lengths.
        w = self.rng.standard_normal((n, self.sigma.shape[0]))
        end_before = self.end_time
        if sk.hesitation_per_min > 0.0:
            left = np.array([self.pause_left])
            on, hist = self._renewal(self.rng.random((n, 1)), sk.hesitation_per_min / 60.0, dt,
                                     times, self.lead_in, self.end_time, False, left,
                                     sk.hesitation_s)
            self.pause_left = float(left[0])
            gate = on
            pause_left = hist[:, 0]
        else:
            gate = self._no_gate
            pause_left = np.full(n, self.pause_left)
        # normal(0, sd) is sd * standard_normal, the same draws (the kernel scales them)
        noise = (self.rng.standard_normal((n, nt, 3))
                 if sk.tracking_noise_mm > 0.0 else self._no_noise)
        if sk.dropout_per_min > 0.0:
            valid, drop_left = self._renewal(self.rng.random((n, nt)), sk.dropout_per_min / 60.0,
                                             dt, times, -math.inf, math.inf, True,
                                             self.dropout_left, sk.dropout_s)
        else:
            valid = np.ones((n, nt), dtype=bool)
            drop_left = np.broadcast_to(self.dropout_left, (n, nt))
        a: F64 = np.exp(-(float(np.add.reduce(dt)) / n) / self.tau)  # dt.mean() (pairwise)
        apow = np.exp(_J[:min(_SUB, n)] * np.log(a))  # a**j as exp(j log a), j < _SUB
        poses, analog, st, s, phase, wph, paused, end = K.motion(
            times, dt, gate, w, a, np.sqrt(1.0 - a * a), apow, self.state, self.sigma,
            self.bias, self._cue_tab, self._par, self._vec3, self._seg, self._ext,
            self.tremor_phase, self.phase_offsets, noise, valid, self.s, self.weave_phase,
            self.time_in_pause, self.end_time)
        self.state = st[-1].copy()
        self.time_in_pause = float(paused[-1])
        self.end_time = float(end)
        self.s = float(s[-1])
        self.tremor_phase = phase[-1] % (2 * math.pi)
        if self.weave_amp > 0.0:
            self.weave_phase = float(wph[-1] % (2 * math.pi))
        self.t_last = float(times[-1])
        self._trace = _Trace(times, st, s, phase, wph if self.weave_amp > 0.0 else None,
                             pause_left, drop_left, paused, end_before)
        return poses, analog, valid

    def _renewal(self, u: F64, rate: float, dt: F64, times: F64, t_lo: float, t_hi: float,
                 sub: bool, left: F64, mean_s: float) -> tuple[NDArray[np.bool_], F64]:
        """Run `kernels.renewal` over a block, drawing each event's exponential length from
        the generator when the kernel asks for it (in sample order, as the old loop did).
        Returns (not in an event (n, m), time left after each sample (n, m)); updates left."""
        on = np.empty(u.shape, dtype=bool)
        hist = np.empty(u.shape)
        j, i = K.renewal(u, rate, dt, times, t_lo, t_hi, sub, left, on, hist, 0, 0, False, 0.0)
        while j >= 0:
            draw = float(self.rng.exponential(mean_s))
            j, i = K.renewal(u, rate, dt, times, t_lo, t_hi, sub, left, on, hist, j, i, True,
                             draw)
        return on, hist

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
