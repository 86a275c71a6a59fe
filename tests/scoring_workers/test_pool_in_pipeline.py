"""The pool plugged into a real controller + LabPipeline exactly as docs/scoring-workers.md
says: simulated rigs over real sockets, scoring in worker processes, windows/cues/results
stored in TimescaleDB by `PipelineOutputs`, the same records the in-process scorer writes."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from pathlib import Path

import psycopg

from devices.fleet import FleetSpec, run_worker
from lab_controller import protocol as P
from lab_controller.competition.referee import compute_mark
from lab_controller.controller.config import ControllerConfig
from lab_controller.controller.core import Controller
from lab_controller.controller.launch import health_check
from lab_controller.controller.transport import ApiClient
from lab_controller.exercises import load_exercise, scene_for
from lab_controller.pipeline import LabPipeline
from lab_controller.scoring_workers import (
    PipelineOutputs,
    PoolScoringObserver,
    ScoringPool,
    telemetry_history,
)
from telemetry import reference as tref
from telemetry.migrate import migrate
from telemetry.queries import session_frames
from telemetry.writer import WriterConfig

EXERCISE = "fillet_t_joint_h"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_controller_scores_through_worker_processes(db_dsn: str, tmp_path: Path) -> None:
    migrate(db_dsn)
    ex = load_exercise(EXERCISE)
    tref.upsert_exercise(db_dsn, ex.id, family=ex.kind, name=ex.title, geometry=ex.scene)
    tref.add_rubric(db_dsn, ex.rubric.rubric_id, int(ex.rubric.version), ex.id,
                    json.loads(ex.rubric.model_dump_json()), pass_mark=ex.rubric.pass_mark)
    pipeline = LabPipeline(db_dsn, WriterConfig("site-p", tmp_path / "spool"),
                           scoring=False).start()
    pool = ScoringPool(history=telemetry_history(db_dsn), retain_s=30.0).start()
    pool.spawn(2)
    scoring = PoolScoringObserver(pool, PipelineOutputs(pipeline))
    p = [_port() for _ in range(3)]
    cfg = ControllerConfig(control_endpoint=f"tcp://127.0.0.1:{p[0]}",
                           data_endpoint=f"tcp://127.0.0.1:{p[1]}",
                           api_endpoint=f"tcp://127.0.0.1:{p[2]}", site_id="site-p")
    ctrl = Controller(cfg, pipeline.sink, observers=[pipeline.observer, scoring],
                      event_sink=pipeline.on_event)
    ctrl.start()
    spec = FleetSpec(controller=cfg.control_endpoint, count=2, seed=3, rig_prefix="p",
                     skill_mix="novice:0.5,expert:0.5", data_endpoint=cfg.data_endpoint,
                     site_id="site-p")
    stop = threading.Event()
    fleet = threading.Thread(target=run_worker, args=(spec, range(2)), kwargs={"stop": stop},
                             daemon=True)
    fleet.start()
    api = ApiClient(cfg.api_endpoint)
    try:
        pool.wait_workers(2)
        deadline = time.monotonic() + 30
        while not all(health_check(ctrl, r).ok for r in spec.rig_ids()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        data = api.request(P.ApiClassLaunch(
            exercise_id=EXERCISE, rigs=spec.rig_ids(), trainees=["T1", "T2"], duration_s=4.0,
            params={"scene": scene_for(EXERCISE)}), timeout_s=30).data
        sids = [r["session_id"] for r in data["results"]]
        assert data["started"] == 2
        assert {len(w["sessions"]) for w in pool.workers().values()} == {1}  # one each
        for sid in sids:
            pool_final = None
            deadline = time.monotonic() + 30
            while pool_final is None:
                assert time.monotonic() < deadline, "no final result"
                live = pipeline.live.get(sid)
                pool_final = live.result if live is not None else None
                time.sleep(0.1)
    finally:
        api.close()
        stop.set()
        fleet.join(10)
        ctrl.stop()
        pool.close()
        pipeline.close()
    with psycopg.connect(db_dsn) as conn:
        for sid in sids:
            n, lo, hi = conn.execute(
                "SELECT count(*), min(window_idx), max(window_idx) FROM score_windows "
                "WHERE session_id = %s", (uuid.UUID(sid),)).fetchone() or (0, 0, 0)
            assert n > 0 and (lo, hi) == (0, n - 1)  # every window once, no gap
            res = conn.execute("SELECT final_score, kernel_version FROM results WHERE "
                               "session_id = %s", (uuid.UUID(sid),)).fetchone()
            assert res is not None and 0 <= res[0] <= 100
            # the worker's mark equals the in-process scorer's on the stored frames
            frames = session_frames(db_dsn, uuid.UUID(sid))
            assert frames is not None
            again = compute_mark(frames, EXERCISE, json.loads(ex.rubric.model_dump_json()),
                                 120.0)
            assert abs(again.score - res[0]) < 1e-3  # results.final_score is a real (float32)
            state = conn.execute("SELECT state, rubric_id FROM sessions WHERE session_id = %s",
                                 (uuid.UUID(sid),)).fetchone()
            assert state == ("finished", ex.rubric.rubric_id)
