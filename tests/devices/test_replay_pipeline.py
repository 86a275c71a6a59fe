"""A recording replayed as a rig (agent → controller, real sockets) arrives sample for sample
with its timing: what the controller's observer sees equals the file, up to one time shift."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devices.agent import AgentConfig, AgentGroup, RigAgent
from devices.driver import SampleBlock, SessionContext
from devices.recording import Recording
from devices.replay import ReplayRig
from devices.sim.rig import SimulatedRig
from devices.sim.skill import skill_by_name
from lab_controller import protocol as P
from lab_controller.controller import ApiClient, Controller, ControllerConfig, SpoolSink
from lab_controller.controller.observers import SessionInfo
from lab_controller.exercises import scene_for


class Collect:
    """Keeps every chunk the controller accepted (a test observer)."""

    def __init__(self) -> None:
        self.chunks: list[P.SampleChunk] = []
        self.ended: list[str] = []

    def on_start(self, info: SessionInfo) -> None:
        pass

    def on_chunk(self, session_id: str, chunk: P.SampleChunk) -> Sequence[P.Cue]:
        self.chunks.append(chunk)
        return ()

    def on_end(self, session_id: str, final_state: str) -> None:
        self.ended.append(final_state)


def _recording() -> Recording:
    clock = [10.0]
    rig = SimulatedRig(skill_by_name("novice", dropout_per_min=30.0, rate_jitter=0.01),
                       seed=2, clock=lambda: clock[0])
    rig.start(SessionContext("0" * 32, "fillet_t_joint_h", "t"), scene_for("fillet_t_joint_h"), {})
    blocks: list[SampleBlock] = []
    while clock[0] < 13.0:
        clock[0] += 0.02
        blocks.extend(rig.read(rig.clock()))
    del blocks[50:53]  # a real gap in the recording
    return Recording.from_blocks(rig.describe(), blocks, rig_id="rec-1")


def test_replay_through_controller_is_exact(tmp_path: Path) -> None:
    rec = _recording()
    assert rec.gaps() == 1
    obs = Collect()
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*")
    ctrl = Controller(cfg, SpoolSink(tmp_path / "spool"), observers=[obs])
    ctrl.start()
    agent = RigAgent(AgentConfig(controller=ctrl.endpoints["control"], rig_id="replay-1"),
                     ReplayRig(rec, speed=math.inf))
    group = AgentGroup([agent])
    th = threading.Thread(target=group.run, daemon=True)
    th.start()
    api = ApiClient(ctrl.endpoints["api"], timeout_s=10)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and not agent.registered:
            time.sleep(0.05)
        reply = api.request(P.ApiSessionStart(rig_id="replay-1", exercise_id="fillet_t_joint_h",
                                              trainee="t"))
        assert reply.ok, reply.error
        end = time.monotonic() + 20
        while time.monotonic() < end and not obs.ended:
            time.sleep(0.05)
        assert obs.ended == ["finished"]
    finally:
        api.close()
        group.stop()
        th.join(10)
        ctrl.stop()
    chunks = sorted(obs.chunks, key=lambda c: c.first_seq)
    poses = np.concatenate([c.poses for c in chunks])
    valid = np.concatenate([c.valid for c in chunks])
    t = np.concatenate([c.rig_times() for c in chunks])
    assert poses.shape[0] == rec.n
    np.testing.assert_array_equal(valid, rec.valid)
    np.testing.assert_array_equal(poses, rec.poses)  # NaN where lost, bit-identical elsewhere
    shift = t[0] - rec.t[0]
    np.testing.assert_allclose(t - shift, rec.t, rtol=0, atol=1e-9)  # gaps and jitter kept
