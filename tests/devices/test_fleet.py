"""The fleet launcher brings up 50 simulated rigs (2 worker processes) that all register with
a real controller on loopback, run a class launch and stream every sample without a gap."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.fleet import Fleet, FleetSpec
from lab_controller import protocol as P
from lab_controller.controller import ApiClient, Controller, ControllerConfig, SpoolSink
from lab_controller.exercises import scene_for


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*")
    ctrl = Controller(cfg, SpoolSink(tmp_path / "spool"))
    ctrl.start()
    try:
        yield ctrl
    finally:
        ctrl.stop()


def _wait(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_spec_assignment_is_deterministic() -> None:
    spec = FleetSpec(controller="tcp://127.0.0.1:1", count=50, seed=3)
    skills = spec.skills()
    assert skills == FleetSpec(controller="x", count=50, seed=3).skills()
    assert (skills.count("expert"), skills.count("intermediate"), skills.count("novice")) == (
        10, 25, 15)
    assert [len(r) for r in FleetSpec(controller="x", count=50, processes=3).shares()] == [
        17, 16, 17]


@pytest.mark.slow
def test_fifty_rigs_register_and_stream(controller: Controller) -> None:
    spec = FleetSpec(controller=controller.endpoints["control"], count=50, processes=2, seed=1)
    api = ApiClient(controller.endpoints["api"], timeout_s=10)
    try:
        with Fleet(spec) as fleet:
            def registered() -> bool:
                rigs = api.request(P.ApiRigs()).data["rigs"]
                # idle and with a known clock offset: the class launch's health check needs both
                return len(rigs) == 50 and all(r["alive"] and r["state"] == "idle"
                                               and r["clock_offset_s"] is not None for r in rigs)

            assert _wait(registered, 30.0), "not every rig registered"
            assert fleet.alive() == 2
            rigs = api.request(P.ApiRigs()).data["rigs"]
            assert sorted(r["rig_id"] for r in rigs) == spec.rig_ids()
            assert {r["software_version"] for r in rigs} == {
                "sim/expert", "sim/intermediate", "sim/novice"}
            reply = api.request(P.ApiClassLaunch(
                exercise_id="fillet_t_joint_h", trainees=[f"t{i:02d}" for i in range(50)],
                duration_s=1.5, params={"scene": scene_for("fillet_t_joint_h")}),
                timeout_s=20)
            assert reply.ok, reply.error
            assert reply.data["started"] == 50, reply.data["not_started"]

            def all_finished() -> list[dict[str, Any]] | None:
                rows = api.request(P.ApiSessions(active_only=False)).data["sessions"]
                done = [r for r in rows if r["state"] == "finished"]
                return rows if len(done) == 50 else None

            assert _wait(all_finished, 30.0), "sessions did not all finish"
            rows = all_finished() or []
            for r in rows:
                assert r["gaps"] == 0 and r["duplicates"] == 0
                # 1.5 s at 120 Hz, the rig's rate jitter allows a sample either way
                assert 178 <= r["samples"] <= 182, r
                assert r["durable_seq"] == r["samples"] - 1
    finally:
        api.close()
    assert fleet.alive() == 0
