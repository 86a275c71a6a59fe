"""Foundation: the real TimescaleDB fixture, the managed cluster CLI and the configuration."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from telemetry.cluster import ManagedCluster, server_versions

LABCTL = [sys.executable, "-m", "lab_controller.cli"]


def test_reports_timescaledb_version_and_license(db_dsn: str) -> None:
    versions = server_versions(db_dsn)
    print(f"\nTimescaleDB {versions['timescaledb']} license={versions['license']} "
          f"PostgreSQL {versions['postgres']}")
    assert versions["timescaledb"].count(".") == 2
    assert versions["license"] in {"apache", "timescale"}


def _binary_copy_payload(rows: list[tuple[datetime, int, float]]) -> bytes:
    """PostgreSQL binary COPY of (timestamptz, int4, float8), built by hand."""
    pg_epoch = datetime(2000, 1, 1, tzinfo=UTC)
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
    for ts, rig, value in rows:
        micros = (ts - pg_epoch) // timedelta(microseconds=1)
        out += struct.pack("!h", 3)
        out += struct.pack("!iq", 8, micros)
        out += struct.pack("!ii", 4, rig)
        out += struct.pack("!id", 8, value)
    out += struct.pack("!h", -1)
    return bytes(out)


def test_hypertable_binary_copy_and_time_bucket(db_dsn: str) -> None:
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    rows = [(start + timedelta(milliseconds=100 * i), i % 3, float(i)) for i in range(1200)]
    with psycopg.connect(db_dsn) as conn:
        conn.execute("CREATE TABLE probe (t timestamptz NOT NULL, rig int NOT NULL, v float8)")
        conn.execute("SELECT create_hypertable('probe', 't', chunk_time_interval => interval '1 minute')")
        with conn.cursor() as cur, cur.copy("COPY probe (t, rig, v) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(_binary_copy_payload(rows))
        buckets = conn.execute(
            "SELECT time_bucket('30 seconds', t) AS b, count(*), sum(v) FROM probe GROUP BY 1 ORDER BY 1"
        ).fetchall()
        chunks = conn.execute("SELECT count(*) FROM show_chunks('probe')").fetchone()
    # 1200 rows at 10 Hz = 120 s = four 30-second buckets of 300 rows each.
    assert [b[1] for b in buckets] == [300, 300, 300, 300]
    assert buckets[0][0] == start
    assert buckets[1][2] == sum(range(300, 600))
    assert chunks is not None and chunks[0] == 2  # 2 minutes at a 1-minute chunk interval


def _labctl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["labctl", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture()
def labctl_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    for key in list(env):
        if key.startswith("LABCTL_"):
            del env[key]
    return env


def test_db_up_twice_status_down(labctl_env: dict[str, str]) -> None:
    base = Path(tempfile.mkdtemp(prefix="labctl-cli-"))
    os.chmod(base, 0o755)
    env = dict(labctl_env, LABCTL_STATE_DIR=str(base))
    try:
        first = _labctl(["db", "up"], env)
        assert first.returncode == 0, first.stderr
        assert "started" in first.stdout and "TimescaleDB" in first.stdout
        second = _labctl(["db", "up"], env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        status = _labctl(["db", "status", "--json"], env)
        assert status.returncode == 0
        assert '"running": true' in status.stdout and '"license": "apache"' in status.stdout
        down = _labctl(["db", "down"], env)
        assert down.returncode == 0 and "stopped" in down.stdout
        after = _labctl(["db", "status", "--json"], env)
        assert '"running": false' in after.stdout
    finally:
        ManagedCluster(base / "pgdata").destroy()


def test_bad_dsn_is_one_readable_line(labctl_env: dict[str, str]) -> None:
    env = dict(labctl_env, LABCTL_DATABASE__DSN="postgresql://nobody:pw@127.0.0.1:1/none")
    res = _labctl(["db", "status"], env)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot connect")
    assert "Traceback" not in res.stderr


def test_config_show_masks_secrets(labctl_env: dict[str, str], tmp_path: Path) -> None:
    toml = tmp_path / "lab.toml"
    toml.write_text('site_id = "city-core"\n[database]\ndsn = "postgresql://w:hunter2@db:5432/t"\n')
    env = dict(labctl_env, LABCTL_LAB_ID="welding-lab-3")
    res = _labctl(["--config", str(toml), "config", "show", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert '"site_id": "city-core"' in res.stdout
    assert '"lab_id": "welding-lab-3"' in res.stdout  # env beats defaults
    assert "hunter2" not in res.stdout and "****" in res.stdout


def test_missing_config_file_is_a_clear_error(labctl_env: dict[str, str]) -> None:
    res = _labctl(["--config", "/nonexistent/labctl.toml", "config", "show"], labctl_env)
    assert res.returncode == 1
    assert res.stderr.strip() == "error: configuration file not found: /nonexistent/labctl.toml"


def test_missing_timescaledb_names_the_missing_piece(tmp_path: Path) -> None:
    from telemetry.cluster import ClusterError, find_installation

    old = os.environ.get("LABCTL_PG_BINDIR")
    os.environ["LABCTL_PG_BINDIR"] = str(tmp_path)  # no postgres here
    try:
        with pytest.raises(ClusterError, match="PostgreSQL server is not installed"):
            find_installation()
    finally:
        if old is None:
            del os.environ["LABCTL_PG_BINDIR"]
        else:
            os.environ["LABCTL_PG_BINDIR"] = old
