"""The feedback loop over real sockets: a novice `SimulatedRig` under the real agent streams to
the real controller, a scoring observer (the real `SessionScorer` on the library exercise)
returns cues, the controller sends them, and the simulated trainee reacts to them.

The scoring observer is test code: wiring the scorer into `labctl controller run` is the
controller's integration step (docs/devices.md, "For the controller")."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from devices.agent import AgentConfig, AgentGroup, RigAgent
from devices.sim.rig import SimulatedRig
from lab_controller import protocol as P
from lab_controller.controller import ApiClient, Controller, ControllerConfig, SpoolSink
from lab_controller.controller.observers import SessionInfo
from lab_controller.exercises import load_exercise, scene_for
from lab_controller.scoring import FinalResult, SessionScorer
from sim_kernels.parameters import CUE_TEXT


class ScoringObserver:
    """Scores each session with the exercise library and turns scorer cues into CUE messages."""

    def __init__(self) -> None:
        self.scorers: dict[str, SessionScorer] = {}
        self.results: dict[str, FinalResult] = {}
        self.sent = 0

    def on_start(self, info: SessionInfo) -> None:
        ex = load_exercise(info.exercise_id)
        self.scorers[info.session_id] = SessionScorer(
            ex.scene["geometry"], ex.reference.tool_pose, ex.rubric, info.rate_hz,
            tool_index=info.roles.index("tool"), reference_rate=ex.rate_hz)

    def on_chunk(self, session_id: str, chunk: P.SampleChunk) -> Sequence[P.Cue]:
        h = chunk.header
        _w, cues = self.scorers[session_id].feed(h.rig_time_first, h.period, chunk.poses,
                                                 chunk.valid)
        out = []
        for c in cues:
            if c.active:
                below = c.direction == CUE_TEXT[c.parameter][0][0]
                d = P.CueDirection.INCREASE if below else P.CueDirection.DECREASE
            else:
                d = P.CueDirection.HOLD
            out.append(P.Cue(session_id=session_id, parameter=c.parameter, direction=d,
                             message=c.message, ref_rig_time=c.rig_time,
                             controller_time=time.time()))
        self.sent += len(out)
        return out

    def on_end(self, session_id: str, final_state: str) -> None:
        scorer = self.scorers.pop(session_id, None)
        if scorer is not None:
            self.results[session_id] = scorer.finish()


def test_cues_reach_the_simulated_trainee(tmp_path: Path) -> None:
    obs = ScoringObserver()
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*")
    ctrl = Controller(cfg, SpoolSink(tmp_path / "spool"), observers=[obs])
    ctrl.start()
    driver = SimulatedRig("novice", seed=11)
    agent = RigAgent(AgentConfig(controller=ctrl.endpoints["control"], rig_id="novice-01"),
                     driver)
    group = AgentGroup([agent])
    thread = threading.Thread(target=group.run, daemon=True)
    thread.start()
    api = ApiClient(ctrl.endpoints["api"], timeout_s=10)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and not agent.registered:
            time.sleep(0.05)
        assert agent.registered
        reply = api.request(P.ApiSessionStart(
            rig_id="novice-01", exercise_id="fillet_t_joint_h", trainee="t-1", duration_s=5.0,
            params={"scene": scene_for("fillet_t_joint_h"), "seed": 3}))
        assert reply.ok, reply.error
        sid = reply.data["session"]["session_id"]
        uuid.UUID(sid)
        end = time.monotonic() + 20
        while time.monotonic() < end and sid not in obs.results:
            time.sleep(0.1)
        assert sid in obs.results, "session did not end"
        assert obs.sent > 0
        assert agent.stats["cues"] > 0 and driver.cues_received == agent.stats["cues"]
        assert driver.sim is not None and driver.sim.cue_count > 0  # the trainee acted on them
        row = api.request(P.ApiSessionShow(session_id=sid)).data["session"]
        assert row["state"] == "finished" and row["gaps"] == 0
        assert obs.results[sid].data_quality.samples == row["samples"] >= 590
    finally:
        api.close()
        group.stop()
        thread.join(10)
        ctrl.stop()
