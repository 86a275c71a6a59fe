"""`labctl demo` end to end against the test TimescaleDB: real controller, rigs, scoring, writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from dashboards import all_dashboards
from telemetry.cluster import ManagedCluster


def test_demo_headless_four_rigs(pg_cluster: ManagedCluster, tmp_path: Path) -> None:
    dsn = pg_cluster.create_database("demo_e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env.update(LABCTL_DATABASE__DSN=dsn, LABCTL_STATE_DIR=str(tmp_path / "state"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    report_file = tmp_path / "report.json"
    proc = subprocess.run(
        ["labctl", "demo", "--headless", "--rigs", "4", "--duration", "10",
         "--json-report", str(report_file)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_file.read_text())
    rows = report["rows"]
    assert len(rows) == 4
    # every rig finished, nothing lost, no gap
    assert [r["state"] for r in rows] == ["finished"] * 4
    assert report["lossless"] is True
    assert report["samples_stored"] == report["samples_produced"] > 4 * 9 * 110
    assert all(r["gaps"] == 0 for r in rows)
    # every result stored, with a score, pass mark and the weakest parameter
    assert all(r["score"] is not None and 0 <= r["score"] <= 100 for r in rows)
    assert all(r["passed"] is not None for r in rows)
    # dashboards written
    dash = Path(report["dashboards_dir"])
    assert sorted(p.stem for p in (dash / "dashboards").glob("*.json")) == sorted(
        d["uid"] for d in all_dashboards())
    assert (dash / "provisioning" / "datasources" / "telemetry.yaml").is_file()
    with psycopg.connect(dsn) as conn:
        for r in rows:
            sid = uuid.UUID(r["session_id"])
            frames = conn.execute(
                "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM pose_frames "
                "WHERE session_id = %s", (sid,)).fetchone()
            assert frames is not None
            count, distinct, lo, hi = frames
            assert count == distinct == r["samples_declared"] == hi - lo + 1 and lo == 0
            # score windows cover the whole session: one per 0.5 s window, none missing
            windows = conn.execute(
                "SELECT count(*), min(window_idx), max(window_idx) FROM score_windows "
                "WHERE session_id = %s", (sid,)).fetchone()
            assert windows is not None
            n_win, wlo, whi = windows
            assert n_win == whi - wlo + 1 == r["windows"] and n_win >= 15
            result = conn.execute(
                "SELECT final_score, passed FROM results WHERE session_id = %s", (sid,)
            ).fetchone()
            assert result is not None and abs(float(result[0]) - r["score"]) < 1e-6
