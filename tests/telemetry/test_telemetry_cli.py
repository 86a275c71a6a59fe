"""`labctl db migrate|roles|retention` and `labctl export` against the real database."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from telemetry_factories import make_pose_batch

from lab_controller.cli import cli
from telemetry.records import SessionRecord
from telemetry.writer import TelemetryWriter, WriterConfig


@pytest.fixture
def run(db_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LABCTL_DATABASE__DSN", db_dsn)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_migrate_status_roles_retention(run, db_dsn: str) -> None:  # type: ignore[no-untyped-def]
    out = run("db", "migrate")
    assert "applied 0001_reference" in out and "applied 0002_timeseries" in out
    assert run("db", "migrate").strip() == "schema up to date"
    status = run("db", "migrate", "--status")
    assert "0001_reference" in status and "pending" not in status
    out = run("db", "roles")
    assert "role grafana_reader" in out and "role labctl_writer" in out
    assert "pose_frames" in run("db", "retention", "show")
    assert "keep 30d" in run("db", "retention", "set", "pose_frames", "--keep", "30d")
    assert "pose_frames: would drop 0 chunk(s)" in run("db", "retention", "apply", "--dry-run")


def test_export_commands(run, db_dsn: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("db", "migrate")
    sid = uuid.uuid4()
    with TelemetryWriter(db_dsn, WriterConfig("site-a", tmp_path / "spool")) as w:
        w.submit(SessionRecord(sid, "rig-01", "finished", trainee_id="T-9"))
        w.submit(make_pose_batch(sid, 0, 30))
        assert w.flush(10)
    out = run("export", "session", str(sid), "--format", "csv", "--out", "x")
    assert f"session-{sid}-poses.csv  (30 rows)" in out
    out = run("export", "session", str(sid), "--format", "parquet", "--out", "x")
    assert f"session-{sid}-poses.parquet  (30 rows)" in out
    assert "(1 sessions)" in run("export", "trainee", "T-9")
    assert (tmp_path / "trainee-T-9.json").exists()
