"""`labctl rig record | replay | sim` end to end (real processes, a real controller)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from devices.recording import Recording
from lab_controller import protocol as P
from lab_controller.cli import cli
from lab_controller.controller import ApiClient, Controller, ControllerConfig, SpoolSink


def test_record_then_replay_locally(tmp_path: Path) -> None:
    out = tmp_path / "rec.npz"
    runner = CliRunner()
    res = runner.invoke(cli, ["rig", "record", "--out", str(out), "--seconds", "0.5",
                              "--skill", "novice", "--exercise", "butt_weave_flat"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output.strip().splitlines()[-1])
    rec = Recording.load(out)
    assert rec.n == info["samples"] >= 50
    assert rec.meta["skill"] == "novice" and rec.meta["exercise_id"] == "butt_weave_flat"
    res = runner.invoke(cli, ["rig", "replay", str(out), "--local", "--speed", "max"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["samples"] == rec.n
    fast = tmp_path / "fast.npz"
    res = runner.invoke(cli, ["rig", "record", "--out", str(fast), "--fast", "--seconds", "600",
                              "--skill", "expert", "--exercise", "spray_panel_flat"])
    assert res.exit_code == 0, res.output
    whole = Recording.load(fast)  # the whole exercise (~19 s of samples) in a moment
    assert 15.0 < whole.t[-1] - whole.t[0] < 25.0
    res = runner.invoke(cli, ["rig", "record", "--out", str(out), "--exercise", "nope"])
    assert res.exit_code != 0 and "unknown exercise" in str(res.exception or res.output)


def test_sim_command_registers_rigs(tmp_path: Path) -> None:
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*")
    ctrl = Controller(cfg, SpoolSink(tmp_path / "spool"))
    ctrl.start()
    api = ApiClient(ctrl.endpoints["api"], timeout_s=10)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab_controller.cli", "rig", "sim", "--count", "4",
             "--controller", ctrl.endpoints["control"], "--processes", "1", "--seconds", "20",
             "--trackers", "tool,headset,off_hand,controller_left,controller_right,waist",
             "--prefix", "cli"], stderr=subprocess.PIPE, text=True)
        rows: list[dict[str, object]] = []
        end = time.monotonic() + 20
        while time.monotonic() < end:
            rows = api.request(P.ApiRigs()).data["rigs"]
            if len(rows) == 4:
                break
            time.sleep(0.2)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1  # --processes 1: one worker with 4 agents
        proc.kill()  # the launcher dies without cleaning up ...
        _, err = proc.communicate(timeout=20)  # ... and its orphaned worker leaves by itself
        assert sorted(str(r["rig_id"]) for r in rows) == [f"cli-{i:03d}" for i in range(4)]
        assert all(len(r["trackers"]) == 6 for r in rows)  # type: ignore[arg-type]
        assert "starting 4 simulated rigs" in err
        stat = Path(f"/proc/{children[0]}/stat")
        # gone, or a zombie waiting for whoever adopted it to reap it
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    finally:
        api.close()
        ctrl.stop()
