"""`AgentGroup` sends its agents' chunks in batches (`send_every`): with a batch size that does
not divide the group, every rig's session still arrives complete, in order, without a gap."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from devices.agent import AgentConfig, AgentGroup, RigAgent
from devices.sim.rig import SimulatedRig
from devices.sim.trainee import LOAD_TEST_TRACKERS
from lab_controller import protocol as P
from lab_controller.controller import ApiClient, Controller, ControllerConfig, SpoolSink
from lab_controller.exercises import scene_for


def test_batched_sends_deliver_every_sample(tmp_path: Path) -> None:
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*")
    ctrl = Controller(cfg, SpoolSink(tmp_path / "spool"))
    ctrl.start()
    ids = [f"grp-{i}" for i in range(5)]
    agents = [RigAgent(AgentConfig(controller=ctrl.endpoints["control"], rig_id=rid),
                       SimulatedRig("intermediate", trackers=LOAD_TEST_TRACKERS, seed=i))
              for i, rid in enumerate(ids)]
    group = AgentGroup(agents, send_every=2)  # batches of 2, 2 and 1
    thread = threading.Thread(target=group.run, daemon=True)
    thread.start()
    api = ApiClient(ctrl.endpoints["api"], timeout_s=10)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(a.registered for a in agents):
            time.sleep(0.05)
        assert all(a.registered for a in agents)
        sids = []
        for rid in ids:
            reply = api.request(P.ApiSessionStart(
                rig_id=rid, exercise_id="fillet_t_joint_h", trainee=f"t-{rid}", duration_s=1.5,
                params={"scene": scene_for("fillet_t_joint_h")}))
            assert reply.ok, reply.error
            sids.append(reply.data["session"]["session_id"])
        end = time.monotonic() + 15
        rows: list[dict[str, object]] = []
        while time.monotonic() < end:
            rows = [api.request(P.ApiSessionShow(session_id=s)).data["session"] for s in sids]
            if all(r["state"] == "finished" for r in rows):
                break
            time.sleep(0.2)
        assert [r["state"] for r in rows] == ["finished"] * 5
        # 1.5 s at 120 Hz: 179 or 180 samples (where the duration falls between two samples)
        assert all(r["gaps"] == 0 and r["samples"] in (179, 180) for r in rows), rows
        assert all(a.backlog_chunks == 0 for a in agents)
    finally:
        api.close()
        group.stop()
        thread.join(10)
        ctrl.stop()
