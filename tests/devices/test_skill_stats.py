"""A simulated trainee's trace has the statistics its skill model declares."""

from __future__ import annotations

import numpy as np
import pytest
from devices_measure import run, weld_params
from scipy.signal import welch

from devices.sim import EXPERT, INTERMEDIATE, NOVICE, SkillModel, TraineeMotion
from devices.sim.trainee import LOAD_TEST_TRACKERS
from lab_controller.exercises import scene_for

QUIET = dict(angle_noise_deg=0.0, distance_noise_mm=0.0, aim_noise_mm=0.0, speed_cv=0.0,
             weave_cv=0.0, tremor_mm=0.0, tremor_deg=0.0, dropout_per_min=0.0,
             tracking_noise_mm=0.0)


def quiet(**over: float) -> SkillModel:
    """A custom model with every random part off except the ones under test."""
    return SkillModel.model_validate({"name": "custom", **QUIET, **over})


def test_angle_std_matches_declared_noise() -> None:
    skill = quiet(angle_noise_deg=3.0)
    stds = []
    for seed in range(4):
        sim = TraineeMotion(scene_for("fillet_t_joint_h"), skill, seed=seed)
        _t, poses, _a, _v = run(sim, 60.0)
        wa = weld_params(sim.scene, poses[:, 0])["work_angle"]
        stds.append(wa.std())
    measured = float(np.sqrt(np.mean(np.square(stds))))
    assert measured == pytest.approx(skill.expected_angle_std_deg(), rel=0.12)


@pytest.mark.parametrize("skill", [EXPERT, INTERMEDIATE, NOVICE], ids=lambda s: s.name)
def test_preset_angle_spread_and_bias(skill: SkillModel) -> None:
    """Within-session std (noise+drift+tremor) and mean |bias| match the preset."""
    skill = skill.model_copy(update={"dropout_per_min": 0.0, "hesitation_per_min": 0.0})
    var, bias = [], []
    for seed in range(8):
        sim = TraineeMotion(scene_for("fillet_t_joint_h"), skill, seed=100 + seed)
        _t, poses, _a, _v = run(sim, 40.0, block=64)
        wa = weld_params(sim.scene, poses[:, 0])["travel_angle"]
        var.append(wa.var())
        bias.append(abs(wa.mean() - 10.0))
    assert float(np.sqrt(np.mean(var))) == pytest.approx(skill.expected_angle_std_deg(), rel=0.3)
    # |bias| ~ U(0.5, 1.5) x declared: mean = declared; drift adds a little spread
    assert float(np.mean(bias)) == pytest.approx(skill.angle_bias_deg,
                                                 abs=0.35 * skill.angle_bias_deg + 1.0)


def test_travel_speed_variability() -> None:
    skill = quiet(speed_cv=0.2)
    cvs = []
    for seed in range(5):
        sim = TraineeMotion(scene_for("fillet_t_joint_h"), skill, seed=seed)
        t, poses, analog, _v = run(sim, 40.0)
        along = weld_params(sim.scene, poses[:, 0])["along"]
        v = np.diff(along) / np.diff(t)
        on = (analog[1:, 0] > 0.5) & (analog[:-1, 0] > 0.5)
        cvs.append(v[on].std() / v[on].mean())
        assert v[on].mean() == pytest.approx(5.0, rel=0.15)
    assert float(np.sqrt(np.mean(np.square(cvs)))) == pytest.approx(0.2, rel=0.15)


def test_tremor_peak_in_spectrum() -> None:
    skill = quiet(tremor_mm=0.15, tremor_hz=9.0, angle_noise_deg=1.0)
    sim = TraineeMotion(scene_for("fillet_t_joint_h"), skill, seed=7)
    _t, poses, _a, _v = run(sim, 30.0)
    across = weld_params(sim.scene, poses[:, 0])["across"]
    f, pxx = welch(across - across.mean(), fs=120.0, nperseg=1024)
    band = f > 3.0  # the slow hand noise sits below 3 Hz
    peak = float(f[band][np.argmax(pxx[band])])
    assert 8.0 <= peak <= 12.0
    assert peak == pytest.approx(9.0, abs=0.5)
    in_band = (f >= 7.0) & (f <= 13.0)
    rms = float(np.sqrt(np.sum(pxx[in_band]) * (f[1] - f[0])))
    assert rms == pytest.approx(0.15, rel=0.25)


def test_dropout_rate_and_nan_marking() -> None:
    skill = quiet(dropout_per_min=30.0, dropout_s=0.2)
    sim = TraineeMotion(scene_for("fillet_t_joint_h"), skill, trackers=LOAD_TEST_TRACKERS,
                        seed=3)
    _t, poses, _a, valid = run(sim, 120.0)
    lost = 1.0 - valid.mean()
    assert lost == pytest.approx(skill.expected_dropout_fraction(), rel=0.25)
    assert np.isnan(poses[~valid]).all()
    assert np.isfinite(poses[valid]).all()
    # events per tracker-minute
    starts = (~valid[1:] & valid[:-1]).sum() / (valid.shape[1] * 2.0)
    assert starts == pytest.approx(30.0, rel=0.25)


def test_hesitations_stop_travel() -> None:
    skill = quiet(hesitation_per_min=12.0, hesitation_s=1.0)
    sim = TraineeMotion(scene_for("fillet_t_joint_h"), skill, seed=11)
    t, poses, _analog, _v = run(sim, 28.0)
    along = weld_params(sim.scene, poses[:, 0])["along"]
    v = np.diff(along) / np.diff(t)
    moving = t[1:] > 1.0
    paused = float(np.mean(np.abs(v[moving]) < 0.05))
    assert paused == pytest.approx(skill.expected_pause_fraction(), abs=0.08)
    assert paused > 0.05


def test_seeded_runs_are_reproducible() -> None:
    scene = scene_for("butt_weave_flat")
    a = run(TraineeMotion(scene, NOVICE, seed=5), 5.0)
    b = run(TraineeMotion(scene, NOVICE, seed=5), 5.0)
    c = run(TraineeMotion(scene, NOVICE, seed=6), 5.0)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[3], b[3])
    assert not np.array_equal(np.nan_to_num(a[1]), np.nan_to_num(c[1]))


def test_expert_follows_each_exercise_geometry() -> None:
    for ex in ("fillet_t_joint_h", "butt_weave_flat"):
        sim = TraineeMotion(scene_for(ex), EXPERT, seed=1)
        _t, poses, analog, valid = run(sim, 40.0, block=64)
        ok = valid[:, 0] & (analog[:, 0] > 0.5)
        p = weld_params(sim.scene, poses[ok, 0])
        tg = sim.scene["targets"]
        assert np.mean(p["work_angle"]) == pytest.approx(tg["work_angle_deg"], abs=2.5)
        assert np.mean(p["travel_angle"]) == pytest.approx(tg["travel_angle_deg"], abs=2.5)
        assert np.isfinite(sim.finished_at) and sim.finished_at < 40.0
        q = poses[valid[:, 0], 0, 3:].astype(float)
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    weave = TraineeMotion(scene_for("butt_weave_flat"), EXPERT, seed=2)
    _t, poses, analog, valid = run(weave, 20.0, block=64)
    ok = valid[:, 0] & (analog[:, 0] > 0.5)
    across = weld_params(weave.scene, poses[ok, 0])["across"]
    # sinusoidal weave of amplitude A has std A / sqrt(2)
    assert np.sqrt(2.0) * across.std() == pytest.approx(3.0, rel=0.2)


def _mean_abs_dev(sim: TraineeMotion, t0: float, seconds: float) -> tuple[float, float]:
    """Generate ``seconds`` from ``t0``; mean |work angle - 45| over the second half."""
    rate = 120.0
    t = t0 + np.arange(1, int(seconds * rate) + 1) / rate
    out = []
    for lo in range(0, t.shape[0], 12):
        p, _a, _v = sim.generate(t[lo:lo + 12])
        out.append(p[:, 0])
    wa = weld_params(sim.scene, np.concatenate(out))["work_angle"]
    half = wa.shape[0] // 2
    return float(np.nanmean(np.abs(wa[half:] - 45.0))), float(t[-1])


@pytest.mark.parametrize("skill", [EXPERT, NOVICE], ids=lambda s: s.name)
def test_cue_reduces_bias_and_novice_reacts_slower(skill: SkillModel) -> None:
    base = skill.model_copy(update={"angle_bias_deg": 10.0, "angle_noise_deg": 1.0,
                                    "angle_drift_deg": 0.0, "dropout_per_min": 0.0})
    sim = TraineeMotion(scene_for("fillet_t_joint_h"), base, seed=4)
    before, t_end = _mean_abs_dev(sim, 0.0, 3.0)
    assert sim.cue("work_angle", at=t_end)
    assert not sim.cue("no_such_parameter", at=t_end)
    span = base.reaction_s + 3 * base.correction_tau_s
    after, _ = _mean_abs_dev(sim, t_end, span)
    # the bias left in the second half is about (1 - k) of it, k at the half's midpoint
    k_mid = sim._k(0, np.array([t_end + 0.75 * span]))[0]
    assert k_mid > 0.3
    assert after == pytest.approx(before * (1.0 - k_mid), rel=0.25)
    k = sim._k(0, np.array([t_end + base.reaction_s + base.correction_tau_s]))[0]
    relapse = np.exp(-base.correction_tau_s / base.relapse_tau_s)
    assert k == pytest.approx(base.correction_gain * (1 - np.exp(-1)) * relapse, rel=0.1)


def test_novice_corrects_more_slowly_than_expert() -> None:
    assert NOVICE.reaction_s > INTERMEDIATE.reaction_s > EXPERT.reaction_s
    assert NOVICE.correction_tau_s > EXPERT.correction_tau_s
    assert NOVICE.correction_gain < EXPERT.correction_gain


def test_cue_names_match_kernel_parameters() -> None:
    from devices.sim.trainee import CUE_CHANNELS
    from sim_kernels.parameters import ALL_PARAMS

    assert set(CUE_CHANNELS) == set(ALL_PARAMS)


def test_max_duration_ends_a_trainee_who_never_finishes() -> None:
    scene = scene_for("fillet_t_joint_h")
    scene["timing"]["max_duration_s"] = 5.0
    sim = TraineeMotion(scene, quiet(hesitation_per_min=120.0, hesitation_s=5.0), seed=1)
    assert sim.finished_at == 5.0
    run(sim, 6.0)
    assert sim.end_time == float("inf")  # never reached the end of the joint
