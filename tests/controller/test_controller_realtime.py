"""ControllerConfig.realtime_priority: the loop and ZeroMQ's I/O threads run SCHED_RR."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from controller_testkit import FAST, Harness, wait_for

from lab_controller import protocol as P
from lab_controller.controller import ControllerConfig
from lab_controller.controller import transport as T


def _policies() -> dict[str, list[int]]:
    """Thread name → scheduling policies of this process's threads with that name."""
    out: dict[str, list[int]] = {}
    for tid in (int(x) for x in os.listdir("/proc/self/task")):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            policy = os.sched_getscheduler(tid)
        except OSError:
            continue  # the thread ended meanwhile
        out.setdefault(name, []).append(policy & ~os.SCHED_RESET_ON_FORK)
    return out


def _loop_thread() -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == "controller")


def _can_realtime() -> bool:
    try:
        param = os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except OSError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, param)
    return True


@pytest.mark.skipif(not _can_realtime(), reason="SCHED_RR needs CAP_SYS_NICE (root) here")
def test_loop_and_io_threads_run_round_robin(harness: Harness) -> None:
    before = _policies().get("ZMQbg/IO/0", [])
    ctrl = harness.start_with(ControllerConfig(**FAST, realtime_priority=10))
    loop = _loop_thread()
    assert loop.native_id is not None
    assert os.sched_getscheduler(loop.native_id) & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR
    assert os.sched_getparam(loop.native_id).sched_priority == 10
    io = _policies().get("ZMQbg/IO/0", [])
    assert io.count(os.SCHED_RR) == before.count(os.SCHED_RR) + 1  # the controller's context
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # only the loop, not its caller
    assert harness.client().request(P.ApiRigs()).data["controller"]["realtime"] is True
    rig = harness.rig("rig-rt")
    assert rig.wait(lambda: rig.handle != 0, 5)
    assert ctrl.realtime


def test_refused_realtime_runs_normally(harness: Harness, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    # The suite runs as root, where the OS never refuses: an unprivileged process is simulated.
    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    ctrl = harness.start_with(ControllerConfig(**FAST, realtime_priority=10))
    assert not ctrl.realtime
    assert "refused" in caplog.text
    loop = _loop_thread()
    assert loop.native_id is not None
    assert os.sched_getscheduler(loop.native_id) == os.SCHED_OTHER
    rig = harness.rig("rig-normal")
    assert rig.wait(lambda: rig.handle != 0, 5)
    assert wait_for(lambda: len(ctrl.registry) == 1, 2)


def test_priority_out_of_range_is_an_error() -> None:
    for bad in (0, 100):
        with pytest.raises(ValueError, match="1-99"):
            T.make_thread_realtime(bad)


@pytest.mark.skipif(not _can_realtime(), reason="SCHED_RR needs CAP_SYS_NICE (root) here")
def test_labctl_controller_run_takes_the_priority(tmp_path: Path) -> None:
    """`labctl controller run --realtime-priority N` reaches the loop (its own process)."""
    from controller_testkit import free_port, spawn_controller, terminate

    from lab_controller.controller import ApiClient

    ports = (free_port(), free_port(), free_port())
    ctl = spawn_controller(ports, tmp_path / "spool", "--realtime-priority", "7")
    try:
        with ApiClient(f"tcp://127.0.0.1:{ports[2]}", timeout_s=5) as api:
            assert api.request(P.ApiRigs()).data["controller"]["realtime"] is True
        rr: dict[str, list[int]] = {}
        for t in Path(f"/proc/{ctl.pid}/task").iterdir():
            if os.sched_getscheduler(int(t.name)) & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR:
                rr.setdefault((t / "comm").read_text().strip(), []).append(
                    os.sched_getparam(int(t.name)).sched_priority)
        # the loop (a Python thread) and ZeroMQ's background threads, each at 7; the main
        # thread and the rest of the process stay normal
        assert rr.pop("ZMQbg/IO/0") == [7] and rr.pop("ZMQbg/Reaper") == [7]
        assert rr == {"python": [7]}
        assert os.sched_getscheduler(ctl.pid) == os.SCHED_OTHER
    finally:
        terminate(ctl)
