"""`labctl rigs`, `labctl session ...`, `labctl class launch` against a live controller."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from controller_testkit import REPO, Harness, wait_for

from lab_controller.cli import cli
from lab_controller.cli._common import CliError


def _run(h: Harness, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(cli, [*args, "--api", h.api_endpoint], env={"COLUMNS": "160"})
    return result.exit_code, result.output, result.exception


def test_teacher_workflow_through_the_cli(harness: Harness) -> None:
    harness.start()
    rigs = [harness.rig(f"rig-{i}") for i in (1, 2, 3)]
    assert wait_for(lambda: all(r.handle for r in rigs))
    assert wait_for(lambda: all(
        row["clock_offset_s"] is not None
        for row in json.loads(_run(harness, "rigs", "--json")[1])["rigs"]))
    code, out, _ = _run(harness, "rigs")
    assert code == 0 and "rig-1" in out and "idle" in out and "synced" in out
    code, out, _ = _run(harness, "session", "start", "--rig", "rig-1", "--exercise", "fillet",
                        "--trainee", "t-07", "--param", "skill=2", "--json")
    assert code == 0, out
    sid = json.loads(out)["session"]["session_id"]
    code, out, _ = _run(harness, "class", "launch", "--exercise", "spray",
                        "--rigs", "rig-1,rig-2", "--rigs", "rig-3", "--trainees", "a,b,c")
    assert code == 0, out
    assert "2 of 3 started" in out and "busy" in out  # rig-1 still runs its session
    code, out, _ = _run(harness, "session", "list")
    assert code == 0 and out.count("running") + out.count("armed") == 3
    code, out, _ = _run(harness, "session", "stop", sid, "--reason", "lesson over")
    assert code == 0 and "stopping" in out
    assert wait_for(lambda: json.loads(_run(harness, "session", "show", sid, "--json")[1])
                    ["session"]["state"] == "finished", 5)
    code, out, _ = _run(harness, "session", "show", sid)
    assert code == 0 and "finished" in out and "lesson over" in out and "t-07" in out
    code, out, _ = _run(harness, "controller", "status")
    assert code == 0 and "3 alive of 3" in out and "finished" in out
    code, out, _ = _run(harness, "controller", "status", "--json")
    assert code == 0 and json.loads(out)["rigs_alive"] == 3
    code, out, exc = _run(harness, "session", "abort", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and isinstance(exc, CliError) and "unknown session" in str(exc)


def test_cli_error_is_one_line_without_traceback() -> None:
    """A controller that is not running: `labctl rigs` says so in one line, exit status 1."""
    p = subprocess.run([sys.executable, "-m", "lab_controller.cli", "rigs", "--api",
                        "tcp://127.0.0.1:1", "--timeout", "0.3"], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert p.stderr.strip().startswith("error: no answer from the controller")
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_controller_run_refuses_plain_text_beyond_loopback(tmp_path: Path) -> None:
    """`labctl controller run` on a non-loopback endpoint without keys: one-line refusal."""
    p = subprocess.run([sys.executable, "-m", "lab_controller.cli", "controller", "run",
                        "--control", "tcp://0.0.0.0:0", "--data", "tcp://127.0.0.1:0",
                        "--api", "tcp://127.0.0.1:0", "--spool-dir", str(tmp_path / "sp"),
                        "--store", "spool"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "plain (unencrypted) endpoints beyond loopback" in p.stderr
    assert "Traceback" not in p.stderr
