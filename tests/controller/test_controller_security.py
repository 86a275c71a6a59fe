"""CurveZMQ with a ZAP allow-list; plain text only on loopback unless allowed."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from controller_testkit import FAST, LAYOUT, Harness, spawn_agent, terminate, wait_for

from lab_controller import protocol as P
from lab_controller.cli import cli
from lab_controller.controller import (
    ApiClient,
    ApiError,
    ClientSecurity,
    Controller,
    ControllerConfig,
    MemorySink,
    SecurityError,
    ServerSecurity,
)
from lab_controller.controller.security import is_local_endpoint, load_keypair, load_public_key


def _keys(tmp: Path) -> tuple[Path, Path]:
    keys, allowed = tmp / "keys", tmp / "allowed"
    runner = CliRunner()
    for name, allow in (("controller", None), ("rig-01", "rig"), ("rig-02", "rig"),
                        ("teacher", "instructor"), ("intruder", None)):
        args = ["keys", "generate", name, "--dir", str(keys)]
        if allow:
            args += ["--allow", allow, "--allow-list", str(allowed)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert (keys / "rig-01.key_secret").stat().st_mode & 0o077 == 0
    return keys, allowed


def _curve(keys: Path, name: str) -> tuple[bytes, bytes, bytes]:
    pub, sec = load_keypair(keys / f"{name}.key_secret")
    return pub, sec, load_public_key(keys / "controller.key")


def test_curve_allow_list_binds_keys_to_names(harness: Harness, tmp_path: Path) -> None:
    keys, allowed = _keys(tmp_path)
    security = ServerSecurity.load(keys / "controller.key_secret", allowed)
    harness.start_with(ControllerConfig(**FAST), security=security)
    good = harness.rig("rig-01", curve=_curve(keys, "rig-01"))
    assert good.wait(lambda: good.handle != 0, 5)
    thief = harness.rig("rig-02", curve=_curve(keys, "rig-01"))  # rig-01's key, other id
    assert thief.wait(lambda: bool(thief.rejects), 5)
    assert thief.rejects[0].code is P.NackCode.NOT_ALLOWED and thief.handle == 0
    stranger = harness.rig("rig-03", curve=_curve(keys, "intruder"))
    plain = harness.rig("rig-04")
    teacher = ClientSecurity.load(keys / "teacher.key_secret", keys / "controller.key")
    with ApiClient(harness.api_endpoint, timeout_s=5, security=teacher) as api:
        rows = api.request(P.ApiRigs()).data["rigs"]
        assert [r["rig_id"] for r in rows] == ["rig-01"]
        # an allowed rig cannot send chunks under another rig's handle
        other = harness.rig("rig-02", curve=_curve(keys, "rig-02"))
        assert other.wait(lambda: other.handle != 0, 5)
        sid = api.request(P.ApiSessionStart(rig_id="rig-01", exercise_id="x", trainee="t")
                          ).data["session"]["session_id"]
        poses = np.zeros((2, 2, 7), np.float32)
        poses[..., 6] = 1
        forged = P.encode_chunk(rig_handle=good.handle, layout=LAYOUT,
                                session_id=uuid.UUID(sid), first_seq=10**6, rig_time_first=1.0,
                                period=0.01, poses=poses, analog=np.zeros((2, 1), np.float32))
        other.send_raw(list(forged), data=True)
        assert wait_for(lambda: api.request(P.ApiRigs()).data["controller"]["bad_input"]
                        .get("not_allowed", 0) >= 2, 3)
        assert api.request(P.ApiSessionShow(session_id=sid)).data["session"]["gaps"] == 0
    assert not stranger.welcomes and not plain.welcomes
    as_rig = ClientSecurity.load(keys / "rig-01.key_secret", keys / "controller.key")
    with ApiClient(harness.api_endpoint, timeout_s=0.7, security=as_rig) as api, \
            pytest.raises(ApiError) as exc:
        api.request(P.ApiRigs())  # a rig key is not an instructor key
    assert exc.value.code == "timeout"


def test_real_agent_over_curve(harness: Harness, tmp_path: Path) -> None:
    keys, allowed = _keys(tmp_path)
    security = ServerSecurity.load(keys / "controller.key_secret", allowed)
    harness.start_with(ControllerConfig(**FAST), security=security)
    server_pub = load_public_key(keys / "controller.key").decode()
    agent = spawn_agent(harness.control, "rig-01", "--curve-cert",
                        str(keys / "rig-01.key_secret"), "--curve-server-key", server_pub,
                        log=tmp_path / "agent.log")
    try:
        teacher = ClientSecurity.load(keys / "teacher.key_secret", keys / "controller.key")
        with ApiClient(harness.api_endpoint, timeout_s=5, security=teacher) as api:
            assert wait_for(lambda: len(api.request(P.ApiRigs()).data["rigs"]) == 1, 10)
            sid = api.request(P.ApiSessionStart(rig_id="rig-01", exercise_id="x", trainee="t")
                              ).data["session"]["session_id"]
            assert wait_for(lambda: api.request(P.ApiSessionShow(session_id=sid))
                            .data["session"]["durable_seq"] > 100, 5)
    finally:
        terminate(agent)


def test_plain_text_only_on_loopback() -> None:
    assert is_local_endpoint("tcp://127.0.0.1:5555") and is_local_endpoint("ipc:///tmp/x")
    assert is_local_endpoint("tcp://localhost:1") and is_local_endpoint("tcp://[::1]:1")
    assert not is_local_endpoint("tcp://0.0.0.0:5555") and not is_local_endpoint("tcp://*:5")
    assert not is_local_endpoint("tcp://eth0:5555")
    cfg = ControllerConfig(**{**FAST, "control_endpoint": "tcp://0.0.0.0:*"})
    ctrl = Controller(cfg, MemorySink())
    with pytest.raises(SecurityError, match="allow_plain_remote"):
        ctrl.start()
    allowed = ControllerConfig(**{**FAST, "control_endpoint": "tcp://0.0.0.0:*",
                                  "allow_plain_remote": True})
    ok = Controller(allowed, MemorySink())
    ok.start()
    ok.stop()


def test_keys_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["keys", "generate", "k", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(cli, ["keys", "generate", "k", "--dir", str(tmp_path)])
    assert again.exit_code != 0 and "refusing to overwrite" in str(again.exception)
