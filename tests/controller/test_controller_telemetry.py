"""`labctl controller run` with its default store: scoring + TimescaleDB as the durable sink.

Real processes: the controller CLI, rig agents (`python -m devices.agent`), the test database.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from controller_testkit import free_port, kill9, spawn_agent, spawn_controller, terminate, wait_for

from lab_controller import protocol as P
from lab_controller.controller import ApiClient


def _session(api: ApiClient, sid: str) -> dict[str, Any]:
    row: dict[str, Any] = api.request(P.ApiSessionShow(session_id=sid)).data["session"]
    return row


def _rig(api: ApiClient, rig_id: str) -> dict[str, Any] | None:
    for r in api.request(P.ApiRigs()).data["rigs"]:
        if r["rig_id"] == rig_id:
            return dict(r)
    return None


def test_controller_kill9_restart_with_timescaledb_sink(db_dsn: str, tmp_path: Path) -> None:
    """Acknowledged = in TimescaleDB: kill -9 mid-session, restart, every sample stored once."""
    ports = (free_port(), free_port(), free_port())
    spool = tmp_path / "spool"
    control, api_ep = f"tcp://127.0.0.1:{ports[0]}", f"tcp://127.0.0.1:{ports[2]}"
    ctl = spawn_controller(ports, spool, "--heartbeat-interval", "0.25", dsn=db_dsn)
    agents = spawn_agent(control, "rig-db", "--count", "2", "--driver", "devices.sim.rig:make_driver",
                         log=tmp_path / "agents.log")
    rigs = [f"rig-db-{i:03d}" for i in range(2)]
    api = ApiClient(api_ep, timeout_s=10)
    try:
        assert wait_for(lambda: all((_rig(api, r) or {}).get("clock_offset_s") is not None
                                    for r in rigs), 20)
        launch = api.request(P.ApiClassLaunch(exercise_id="fillet_t_joint_h", rigs=rigs,
                                              trainees=["p1", "p2"])).data
        assert launch["started"] == 2, launch["results"]
        sids = [r["session_id"] for r in launch["results"]]
        assert wait_for(lambda: all(_session(api, s)["durable_seq"] > 200 for s in sids), 15)
        kill9(ctl)
        time.sleep(1.0)  # the rigs keep recording into their own stores meanwhile
        ctl = spawn_controller(ports, spool, "--heartbeat-interval", "0.25", dsn=db_dsn)

        def adopted() -> bool:
            rows = api.request(P.ApiSessions(active_only=True)).data["sessions"]
            return {r["session_id"] for r in rows if r["state"] == "running"} == set(sids)

        assert wait_for(adopted, 20)
        time.sleep(1.0)
        for s in sids:
            api.request(P.ApiSessionStop(session_id=s))
        assert wait_for(lambda: all(_session(api, s)["state"] == "finished" for s in sids), 20)
        lasts = {s: _session(api, s)["end_of_stream"]["last_seq"] for s in sids}
    finally:
        api.close()
        terminate(agents)
        terminate(ctl)
    with psycopg.connect(db_dsn) as conn:
        for s in sids:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM pose_frames "
                "WHERE session_id = %s", (uuid.UUID(s),)).fetchone()
            assert row == (lasts[s] + 1, lasts[s] + 1, 0, lasts[s]), f"session {s}: {row}"
            windows = conn.execute("SELECT count(*) FROM score_windows WHERE session_id = %s",
                                   (uuid.UUID(s),)).fetchone()
            assert windows is not None and windows[0] > 0  # scored live, before and after
            state = conn.execute("SELECT state FROM sessions WHERE session_id = %s",
                                 (uuid.UUID(s),)).fetchone()
            assert state == ("finished",)


def test_controller_run_with_scoring_workers(db_dsn: str, tmp_path: Path) -> None:
    """`--scoring-workers 1`: the kernels run in a worker process; windows and result stored."""
    ports = (free_port(), free_port(), free_port())
    spool = tmp_path / "spool"
    control, api_ep = f"tcp://127.0.0.1:{ports[0]}", f"tcp://127.0.0.1:{ports[2]}"
    ctl = spawn_controller(ports, spool, "--scoring-workers", "1", "--scoring-bind",
                           f"tcp://127.0.0.1:{free_port()}", dsn=db_dsn)
    agent = spawn_agent(control, "rig-pw", "--driver", "devices.sim.rig:make_driver",
                        log=tmp_path / "agent.log")
    api = ApiClient(api_ep, timeout_s=10)
    try:
        assert wait_for(lambda: (_rig(api, "rig-pw") or {}).get("clock_offset_s") is not None, 20)
        row = api.request(P.ApiSessionStart(rig_id="rig-pw", exercise_id="fillet_t_joint_h",
                                            trainee="pw1", duration_s=4.0)).data["session"]
        sid = row["session_id"]
        assert wait_for(lambda: _session(api, sid)["state"] == "finished", 30)
        last = _session(api, sid)["end_of_stream"]["last_seq"]
        time.sleep(1.5)  # the pool's last windows and the result reach the writer
    finally:
        api.close()
        terminate(agent)
        terminate(ctl)
    with psycopg.connect(db_dsn) as conn:
        frames = conn.execute("SELECT count(DISTINCT seq) FROM pose_frames WHERE session_id = %s",
                              (uuid.UUID(sid),)).fetchone()
        assert frames == (last + 1,)
        windows = conn.execute(
            "SELECT count(*), max(window_idx) - min(window_idx) + 1 FROM score_windows "
            "WHERE session_id = %s", (uuid.UUID(sid),)).fetchone()
        assert windows is not None and windows[0] == windows[1] and windows[0] >= 6
        result = conn.execute("SELECT final_score FROM results WHERE session_id = %s",
                              (uuid.UUID(sid),)).fetchone()
        assert result is not None and 0 <= float(result[0]) <= 100
