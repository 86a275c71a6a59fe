"""Integration: rig agents against the real controller (`lab_controller.controller`) and its spool.

The agent tests elsewhere use a deliberately small test controller; this one checks the two
real implementations of docs/protocol.md agree, end to end down to the bytes in the spool.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devices.agent import AgentConfig, RigAgent
from devices.minimal import MinimalDriver, generate
from lab_controller import protocol as P
from lab_controller.controller import (
    ApiClient,
    Controller,
    ControllerConfig,
    SpoolSink,
    decode_spool_record,
)


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[tuple[Controller, SpoolSink, ApiClient]]:
    c, d, a = _ports(3)
    cfg = ControllerConfig(
        control_endpoint=f"tcp://127.0.0.1:{c}",
        data_endpoint=f"tcp://127.0.0.1:{d}",
        api_endpoint=f"tcp://127.0.0.1:{a}",
    )
    sink = SpoolSink(tmp_path / "ctl-spool")
    ctrl = Controller(cfg, sink)
    ctrl.start()
    api = ApiClient(cfg.api_endpoint, timeout_s=10.0)
    try:
        yield ctrl, sink, api
    finally:
        api.close()
        ctrl.stop()
        sink.close()


def _wait(pred: object, timeout: float) -> bool:
    assert callable(pred)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def test_agents_stream_complete_sessions_into_the_real_controller_spool(
    controller: tuple[Controller, SpoolSink, ApiClient],
) -> None:
    ctrl, sink, api = controller
    agents: list[RigAgent] = []
    threads: list[threading.Thread] = []
    for i in range(3):
        agent = RigAgent(
            AgentConfig(controller=ctrl.cfg.control_endpoint, rig_id=f"int-{i}"),
            MinimalDriver(seed=20 + i, loss_every=11),
        )
        th = threading.Thread(target=agent.run, daemon=True)
        th.start()
        agents.append(agent)
        threads.append(th)
    try:
        assert _wait(lambda: all(a.registered for a in agents), 10.0)
        sids = {}
        for i in range(3):
            rep = api.request(
                P.ApiSessionStart(
                    rig_id=f"int-{i}", exercise_id="ex", trainee=f"t{i}",
                    params={"duration_samples": 90 + 30 * i},
                )
            )  # fmt: skip
            sids[i] = rep.data["session"]["session_id"]

        def rows() -> dict[str, dict[str, object]]:
            data = api.request(P.ApiSessions(active_only=False)).data["sessions"]
            return {r["session_id"]: r for r in data}

        assert _wait(lambda: all(rows()[s]["state"] == "finished" for s in sids.values()), 15.0)
        final = rows()
        for i, sid in sids.items():
            row = final[sid]
            n = 90 + 30 * i
            assert row["durable_seq"] == n - 1 and row["gaps"] == 0 and row["duplicates"] == 0
            assert row["end_of_stream"] == {"last_seq": n - 1, "reason": "finished"}
        # the agents forgot the sessions only after END_OF_STREAM_ACK, with nothing left over
        assert _wait(lambda: all(a.state is P.RigState.IDLE and a.backlog_chunks == 0 for a in agents), 5)
    finally:
        for a in agents:
            a.stop()
        for th in threads:
            th.join(5.0)
    # What the controller made durable is exactly what the drivers produced.
    got: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for rec in sink.spool.records():
        chunk = decode_spool_record(rec.payload)
        per = got.setdefault(str(chunk.session_id), {})
        for k in range(chunk.count):
            per[chunk.first_seq + k] = (chunk.poses[k].copy(), chunk.valid[k].copy())
    for i, sid in sids.items():
        n = 90 + 30 * i
        assert sorted(got[sid]) == list(range(n))
        poses, _analog, valid = generate(20 + i, 0, n, 3, 1, 11)
        stored = np.stack([got[sid][k][0] for k in range(n)])
        assert np.array_equal(np.nan_to_num(stored, nan=-9), np.nan_to_num(poses, nan=-9))
        assert np.array_equal(np.stack([got[sid][k][1] for k in range(n)]), valid)


def test_curve_rig_with_an_allowed_key_registers_and_a_stranger_does_not(tmp_path: Path) -> None:
    """docs/protocol.md §17: CurveZMQ with the controller's ZAP allow-list, agent as a process."""
    import os
    import subprocess
    import sys

    from lab_controller.controller import ServerSecurity, generate_keypair

    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    server_pub, server_secret = generate_keypair(keys, "controller")
    rig_pub, rig_secret = generate_keypair(keys, "rig-c")
    _stranger_pub, stranger_secret = generate_keypair(tmp_path / "other", "rig-x")
    (allowed / "rigs").mkdir(parents=True)
    (allowed / "rigs" / "rig-c.key").write_bytes(rig_pub.read_bytes())
    c, d, a = _ports(3)
    cfg = ControllerConfig(
        control_endpoint=f"tcp://127.0.0.1:{c}",
        data_endpoint=f"tcp://127.0.0.1:{d}",
        api_endpoint=f"tcp://127.0.0.1:{a}",
    )
    sink = SpoolSink(tmp_path / "spool")
    ctrl = Controller(cfg, sink, security=ServerSecurity.load(server_secret, allowed))
    ctrl.start()
    root = Path(__file__).resolve().parents[2]
    procs = []
    try:
        for rig_id, secret in (("rig-c", rig_secret), ("rig-x", stranger_secret)):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "devices.agent", "--controller", cfg.control_endpoint,
                 "--rig-id", rig_id, "--curve-cert", str(secret), "--curve-server-key", str(server_pub)],
                cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        assert _wait(lambda: ctrl.registry.get("rig-c") is not None, 15.0)
        time.sleep(1.0)
        assert ctrl.registry.get("rig-x") is None  # its handshake never passes ZAP
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        ctrl.stop()
        sink.close()
