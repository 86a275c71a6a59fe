"""Shared fixtures: a real PostgreSQL + TimescaleDB server for the whole test session.

The cluster is the same code the demo uses (`telemetry.cluster.ManagedCluster`), started on a
free port in a temporary directory; each test module gets a fresh database.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.cluster import ClusterError, ManagedCluster, server_versions

_SEEN: dict[str, str] = {}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ManagedCluster]:
    """A throw-away PostgreSQL + TimescaleDB cluster, stopped and deleted after the session."""
    base = Path(tempfile.mkdtemp(prefix="labctl-test-pg-"))
    os.chmod(base, 0o755)  # the server runs as `postgres` when the tests run as root
    cluster = ManagedCluster(base / "data")
    try:
        cluster.start()
    except ClusterError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.exit(f"cannot start the test database: {exc}", returncode=3)
    try:
        probe = cluster.create_database("labctl_probe")
        _SEEN.update(server_versions(probe))
    except Exception as exc:  # reported in the summary; the tests will fail on their own
        _SEEN["error"] = str(exc)
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def db_dsn(pg_cluster: ManagedCluster, request: pytest.FixtureRequest) -> str:
    """DSN of a fresh database (with the timescaledb extension) for this test module."""
    raw = request.module.__name__.rsplit(".", 1)[-1]
    name = "t_" + re.sub(r"[^a-z0-9_]", "_", raw.lower())[:50]
    return pg_cluster.create_database(name, exist_ok=False)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show which TimescaleDB the suite runs against (version and license)."""
    try:
        from telemetry.cluster import find_installation

        inst = find_installation()
    except ClusterError as exc:
        return [f"timescaledb: NOT AVAILABLE ({exc})"]
    return [
        f"postgresql: {inst.major} ({inst.bindir}); timescaledb: {inst.timescaledb_version}"
        " (license: see the summary line 'test database:')"
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which server the suite really used (version and timescaledb.license)."""
    if _SEEN:
        terminalreporter.write_line(
            f"test database: PostgreSQL {_SEEN.get('postgres')}, TimescaleDB "
            f"{_SEEN.get('timescaledb')}, timescaledb.license={_SEEN.get('license')}"
        )


__all__ = ["db_dsn", "pg_cluster", "server_versions"]
