"""deploy/: files exist, YAML parses, mounts and uids line up, generated files do not drift,
and the one-shot database set-up gives Grafana a role that reads but cannot write or see names."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import labdata
import psycopg
import pytest
import yaml

from dashboards import all_dashboards
from dashboards.check import check_dashboard
from dashboards.common import DATASOURCE_TYPE, DATASOURCE_UID, FOLDER_UID
from dashboards.files import DASHBOARDS_MOUNT, write_all
from dashboards.macros import TimeRange
from dashboards.provision import DataSourceConfig
from telemetry.schema import DASHBOARD_ROLE, IDENTITY_TABLES, WRITER_ROLE, Results

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_DS = DataSourceConfig(url="timescaledb:5432", sslmode="disable")
"""How the compose network reaches the database (what deploy/grafana was built with)."""
HISTORY = TimeRange(labdata.NOW - timedelta(days=35), labdata.NOW, timedelta(hours=1))


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_files_exist_and_parse() -> None:
    for name in ["compose.yaml", "Dockerfile", ".env.example", "setup_db.py",
                 "grafana/provisioning/datasources/telemetry.yaml",
                 "grafana/provisioning/dashboards/lab.yaml"]:
        assert (DEPLOY / name).is_file(), name
    assert set(compose()["services"]) == {"timescaledb", "db-setup", "controller", "grafana"}
    for path in (DEPLOY / "grafana").rglob("*.yaml"):
        yaml.safe_load(path.read_text())
    for path in (DEPLOY / "grafana").rglob("*.json"):
        json.loads(path.read_text())


def test_generated_grafana_files_match_the_code(tmp_path: Path) -> None:
    """deploy/grafana is `labctl dashboards build --db-url timescaledb:5432 --sslmode disable`."""
    write_all(tmp_path, all_dashboards(), COMPOSE_DS)
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(DEPLOY / "grafana"): p.read_text()
                 for p in (DEPLOY / "grafana").rglob("*") if p.is_file()}
    assert committed == fresh, "run: labctl dashboards build --out deploy/grafana " \
        "--db-url timescaledb:5432 --sslmode disable"


def test_mounts_and_uids_line_up() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.rsplit(":", 2)[:2] if v.endswith(":ro") else v.split(":", 1)
                  for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./grafana/dashboards"] == DASHBOARDS_MOUNT
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/lab.yaml").read_text())["providers"][0]
    assert provider["options"]["path"] == DASHBOARDS_MOUNT and provider["folderUid"] == FOLDER_UID
    ds = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/telemetry.yaml").read_text())["datasources"][0]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == DATASOURCE_TYPE
    assert ds["jsonData"]["timescaledb"] is True
    host = ds["url"].split(":")[0]
    assert host in compose()["services"]  # the data source points at the compose service
    assert ds["user"] == DASHBOARD_ROLE  # the role db-setup creates (telemetry.roles)
    controller_dsn = compose()["services"]["controller"]["environment"]["LABCTL_DATABASE__DSN"]
    assert controller_dsn.startswith(f"postgresql://{WRITER_ROLE}:")  # ingest as the writer
    assert "GRAFANA_DB_PASSWORD" in grafana["environment"]
    uids = set()
    for path in (DEPLOY / "grafana/dashboards").glob("*.json"):
        model = json.loads(path.read_text())
        assert path.stem == model["uid"]
        uids.add(model["uid"])
        for panel in model["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == ds["uid"]
    assert uids == {m["uid"] for m in all_dashboards()}
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == DASHBOARDS_MOUNT and Path(home).stem in uids


def test_every_variable_compose_needs_is_in_env_example() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    needed = set(re.findall(r"\$\{(\w+)", text))
    example = {line.split("=")[0] for line in (DEPLOY / ".env.example").read_text().splitlines()
               if "=" in line and not line.startswith("#")}
    assert needed <= example, needed - example


def test_dockerfile_copies_every_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for package in ["lab_controller", "sim_kernels", "telemetry", "devices", "dashboards"]:
        assert f"COPY {package} " in text


def _setup_db() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_setup_db", DEPLOY / "setup_db.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_setup_db_makes_a_read_only_role_without_identities(db_dsn: str) -> None:
    setup = _setup_db().setup
    assert setup(db_dsn, "pw-1")  # migrations applied the first time
    labdata.fill(db_dsn)
    assert setup(db_dsn, "pw-2") == []  # idempotent; password rotated
    params = psycopg.conninfo.conninfo_to_dict(db_dsn)
    reader = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=params["port"], dbname=params["dbname"],
        user=DASHBOARD_ROLE, password="pw-2")
    with psycopg.connect(reader, autocommit=True) as conn:
        count = conn.execute(f"SELECT count(*) FROM {Results.TABLE}").fetchone()
        assert count is not None and count[0] > 0
        for table in IDENTITY_TABLES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table.TABLE}")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(f"DELETE FROM {Results.TABLE}")
        # Every panel runs as this role (what Grafana will log in as).
        for model in all_dashboards():
            checks = check_dashboard(model, labdata.make_runner(conn), HISTORY)
            assert all(c.ok for c in checks), [str(c) for c in checks if not c.ok]
