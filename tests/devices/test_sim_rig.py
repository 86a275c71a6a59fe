"""`SimulatedRig` honours the `PoseSource` contract with real clocks and cues."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from devices.driver import PoseSource, SampleBlock, SessionContext, check_block, check_driver
from devices.sim.rig import SimulatedRig
from devices.sim.trainee import LOAD_TEST_TRACKERS
from lab_controller.exercises import scene_for
from lab_controller.protocol import Cue, CueDirection

# A fixed session id: the simulated motion's default seed derives from it, so a random id made
# the statistical bounds below hold only most of the time.
_SESSION_ID = str(uuid.UUID("5eed0000-0000-4000-8000-000000000006"))


def _session(duration: float | None = None) -> SessionContext:
    return SessionContext(_SESSION_ID, "fillet_t_joint_h", "trainee-1", duration_s=duration)


class FakeClock:
    """A settable host clock, so the test controls time exactly."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _drain(rig: SimulatedRig, clock: FakeClock, step: float, until: float) -> list[SampleBlock]:
    blocks: list[SampleBlock] = []
    while clock.t < until and not rig.finished:
        clock.t += step
        blocks.extend(rig.read(rig.clock()))
    return blocks


def _concat(blocks: list[SampleBlock]) -> tuple[np.ndarray, np.ndarray]:
    t = np.concatenate([b.rig_time_first + b.period * np.arange(b.count) for b in blocks])
    p = np.concatenate([b.poses for b in blocks])
    return t, p


def test_contract_and_block_shapes() -> None:
    clock = FakeClock()
    rig = SimulatedRig("novice", trackers=LOAD_TEST_TRACKERS, seed=3, clock=clock)
    assert isinstance(rig, PoseSource)
    info = check_driver(rig)
    assert [r for _, r in info.trackers] == ["tool", "headset", "off_hand", "other", "other",
                                             "other"]
    assert info.analog == ("trigger",) and "cues" in info.capabilities
    rig.start(_session(), scene_for("fillet_t_joint_h"), {})
    blocks = _drain(rig, clock, 0.013, clock.t + 3.0)
    for b in blocks:
        check_block(b, info)
        assert b.poses.dtype == np.float32 and b.valid.dtype == np.bool_
    t, _p = _concat(blocks)
    assert np.all(np.diff(t) > 0)
    # 120 Hz nominal: ~360 samples in 3 s, periods within the declared jitter
    assert 340 <= t.shape[0] <= 362
    periods = np.array([b.period for b in blocks])
    assert np.all(np.abs(periods * 120.0 - 1.0) < 0.02)


def test_samples_do_not_depend_on_read_cadence() -> None:
    """The same seed gives the same samples whether the agent polls every 5 or 40 ms."""
    out = []
    for step in (0.005, 0.04):
        clock = FakeClock()
        rig = SimulatedRig("intermediate", seed=9, clock=clock, clock_offset_s=0.0)
        rig.start(_session(), scene_for("butt_weave_flat"), {"seed": 77})
        t, p = _concat(_drain(rig, clock, step, clock.t + 2.0))
        out.append((t, p))
    n = min(out[0][0].shape[0], out[1][0].shape[0])
    np.testing.assert_allclose(out[0][0][:n], out[1][0][:n], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[0][1][:n], out[1][1][:n])


def test_finishes_by_itself_and_by_duration() -> None:
    clock = FakeClock()
    rig = SimulatedRig("expert", seed=1, clock=clock)
    rig.start(_session(duration=1.5), scene_for("spray_panel_flat"), {})
    blocks = _drain(rig, clock, 0.02, clock.t + 5.0)
    assert rig.finished
    t, _ = _concat(blocks)
    assert t[-1] - t[0] == pytest.approx(1.5, abs=0.02)
    rig2 = SimulatedRig("expert", seed=1, clock=clock)
    rig2.start(_session(), scene_for("spray_panel_flat"), {"skill": {"base": "expert",
                                                                     "speed_bias": 0.0}})
    blocks = _drain(rig2, clock, 0.05, clock.t + 60.0)
    assert rig2.finished
    t, _ = _concat(blocks)
    assert 15.0 < t[-1] - t[0] < 25.0  # the spray exercise takes about 19 s
    assert not rig2.read(rig2.clock() + 10.0)


def test_stop_and_bad_scene() -> None:
    clock = FakeClock()
    rig = SimulatedRig(seed=1, clock=clock)
    with pytest.raises(ValueError, match="cannot simulate"):
        rig.start(_session(), {"kind": "underwater_weld"}, {})
    rig.start(_session(), scene_for("fillet_t_joint_h"), {})
    _drain(rig, clock, 0.02, clock.t + 0.5)
    rig.stop()
    clock.t += 1.0
    assert not rig.read(rig.clock())


def test_cue_from_the_wire_changes_the_motion() -> None:
    clock = FakeClock()
    rig = SimulatedRig("novice", seed=2, clock=clock)
    rig.start(_session(), scene_for("fillet_t_joint_h"), {})
    _drain(rig, clock, 0.02, clock.t + 1.0)
    cue = Cue(session_id=rig.session.session_id if rig.session else "", parameter="work_angle",
              direction=CueDirection.DECREASE, controller_time=time.time())
    rig.on_cue(cue)
    rig.on_cue(cue.model_copy(update={"direction": CueDirection.HOLD}))
    assert rig.cues_received == 2
    assert rig.sim is not None and rig.sim.cue_count == 1


def test_rig_clock_has_offset_and_drift() -> None:
    clock = FakeClock()
    rig = SimulatedRig("novice", seed=5, clock=clock)
    c0 = rig.clock()
    clock.t += 1000.0
    assert rig.clock() - c0 == pytest.approx(1000.0 * (1 + 20e-6), abs=1e-6)
    assert abs(c0 - clock.t) > 1.0


def test_rate_jitter_matches_the_model() -> None:
    """Block periods scatter around 1/rate with the declared relative std."""
    from devices.sim.skill import skill_by_name

    clock = FakeClock()
    rig = SimulatedRig(skill_by_name("intermediate", rate_jitter=0.01), seed=4, clock=clock)
    rig.start(_session(), scene_for("fillet_t_joint_h"), {})
    blocks = _drain(rig, clock, 0.25, clock.t + 30.0)  # one generated block per read
    rel = np.array([b.period for b in blocks]) * 120.0 - 1.0
    assert abs(rel.mean()) < 0.003
    assert rel.std() == pytest.approx(0.01, rel=0.25)


def test_ninety_hertz_rig() -> None:
    clock = FakeClock()
    rig = SimulatedRig("expert", rate_hz=90.0, seed=6, clock=clock)
    assert rig.describe().rate_hz == 90.0
    # A fixed motion seed: by default it derives from the (random) session id, and the rate
    # jitter it draws moved the sample count across the bound in about 1 run in 6.
    rig.start(_session(), scene_for("fillet_t_joint_h"), {"seed": 6})
    t, _p = _concat(_drain(rig, clock, 0.02, clock.t + 2.0))
    # the drain reads up to ~2.02 s (181.8 periods) and one block's period may be up to
    # ~0.6 % short (3 sigma of the 0.2 % rate jitter): 181 or 182 samples
    assert 175 <= t.shape[0] <= 182
    assert np.median(np.diff(t)) == pytest.approx(1 / 90, rel=0.02)


def test_agent_factory() -> None:
    from devices.sim.rig import make_driver

    rigs = [make_driver(i, 10 + i) for i in range(3)]
    assert [r.default_skill.name for r in rigs] == ["expert", "intermediate", "novice"]
    assert check_driver(rigs[0]).rate_hz == 120.0


def _cued_run(cue_at: float | None) -> tuple[np.ndarray, np.ndarray, SimulatedRig]:
    clock = FakeClock()
    rig = SimulatedRig("novice", seed=3, clock=clock, clock_offset_s=0.0)
    rig.start(_session(), scene_for("fillet_t_joint_h"), {"seed": 11})
    blocks = _drain(rig, clock, 0.02, clock.t + (cue_at if cue_at is not None else 4.0))
    if cue_at is not None:
        rig.on_cue(Cue(session_id=_SESSION_ID, parameter="work_angle",
                       direction=CueDirection.DECREASE, controller_time=time.time()))
        blocks += _drain(rig, clock, 0.02, clock.t + 4.0 - cue_at)
    t, p = _concat(blocks)
    return t, p, rig


def test_cue_rewinds_the_look_ahead() -> None:
    """Samples generated ahead but not handed out are generated again after a cue: the onset
    is the trainee's reaction time after the cue (not the end of the look-ahead), what was
    handed out before stays, the stream has no gap or overlap, and it is reproducible."""
    _t0, p0, _ = _cued_run(None)
    t1, p1, rig1 = _cued_run(1.0)
    t2, p2, _ = _cued_run(1.0)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(p1, p2)  # same seed, same cue time: same samples
    sim = rig1.sim
    assert sim is not None and sim.cue_count == 1
    onset = sim.cues[0][-1].onset  # work angle channel
    assert onset == pytest.approx(1.0 + sim.skill.reaction_s, abs=0.03)
    before = t1 <= t1[0] + 0.99
    np.testing.assert_array_equal(p1[before], p0[: int(before.sum())])  # handed out: kept
    gaps = np.diff(t1)
    assert np.all(gaps > 0.99 / 120) and np.all(gaps < 1.01 / 120)  # no gap, no overlap
    assert not np.array_equal(np.nan_to_num(p1), np.nan_to_num(p0[: p1.shape[0]]))


def test_agent_chunks_are_encode_chunk_bytes() -> None:
    """The agent encodes a driver's checked blocks with the per-stream header prefix
    (`encode_checked_chunk`): the frames are the bytes `encode_chunk` gives for the same block,
    with and without lost trackers, under the registration handle and after a new handle."""
    from devices.agent import AgentConfig, RigAgent, _Stream
    from lab_controller import protocol as P

    clock = FakeClock()
    rig = SimulatedRig("novice", trackers=LOAD_TEST_TRACKERS, seed=5, clock=clock)
    rig.start(_session(), scene_for("fillet_t_joint_h"), {"skill": {"base": "novice",
                                                                    "dropout_per_min": 60.0}})
    agent = RigAgent(AgentConfig(controller="tcp://127.0.0.1:9", rig_id="enc"), rig)
    key = uuid.UUID(_SESSION_ID).bytes
    stream = _Stream(session_id=_SESSION_ID, key=key)
    blocks = _drain(rig, clock, 0.02, clock.t + 12.0)
    assert any(b.all_valid is False for b in blocks) and any(b.all_valid for b in blocks)
    for i, block in enumerate(blocks):
        agent.rig_handle = 3 if i < len(blocks) // 2 else 11
        first = stream.next_seq
        agent._add_block(stream, block)
        out = agent._pending.pop()
        assert (out.frame0, out.frame1) == P.encode_chunk(
            rig_handle=agent.rig_handle, layout=agent.layout, session_id=key, first_seq=first,
            rig_time_first=block.rig_time_first, period=block.period, poses=block.poses,
            analog=block.analog, valid=block.valid)


def test_warmup_compiles_the_kernels_before_any_session() -> None:
    """A rig process compiles the simulation kernels before its rigs register
    (`FleetSpec.warmup_scenes`), not in its first session, where a cold cache stalled every
    rig of the process for ~11 s and the controller declared them dead. Run in a fresh
    interpreter: this one has compiled them already."""
    import subprocess
    import sys

    code = (
        "from devices.sim import kernels as K\n"
        "from devices.sim.rig import warmup\n"
        "from lab_controller.exercises import exercise_ids, scene_for\n"
        "assert not K.motion.signatures and not K.renewal.signatures\n"
        "took = warmup([scene_for(e) for e in exercise_ids()])\n"
        "assert took > 0 and K.motion.signatures and K.renewal.signatures\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_warmup_refuses_a_scene_it_cannot_run() -> None:
    from devices.sim.rig import warmup

    with pytest.raises((KeyError, ValueError)):
        warmup([{"exercise_id": "broken", "kind": "weld_fillet"}])
