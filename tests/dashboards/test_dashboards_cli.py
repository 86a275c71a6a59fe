"""`labctl dashboards build | provision | check` through the real click entry point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labdata
import psycopg
import pytest
import yaml
from click.testing import CliRunner
from grafana_standin import GrafanaStandIn
from labdata import make_runner

from dashboards import all_dashboards
from dashboards.common import query_name
from lab_controller.cli import cli
from lab_controller.cli._common import CliError
from telemetry.migrate import migrate


def invoke(args: list[str], obj: dict[str, Any] | None = None) -> Any:
    return CliRunner().invoke(cli, args, obj=obj if obj is not None else {},
                              catch_exceptions=False)


def test_build_writes_sorted_json_and_provisioning_and_prints_the_outline(tmp_path: Path) -> None:
    result = invoke(["dashboards", "build", "--out", str(tmp_path), "--db-url", "db:5432"])
    assert result.exit_code == 0, result.output
    models = all_dashboards()
    for model in models:
        path = tmp_path / "dashboards" / f"{model['uid']}.json"
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True,
                                  ensure_ascii=False) + "\n"
        assert json.loads(text) == json.loads(json.dumps(model))
        assert model["title"] in result.output
        for panel in model["panels"]:
            assert panel["title"] in result.output
            for target in panel.get("targets", []):
                assert query_name(target["rawSql"]) in result.output
    ds = yaml.safe_load((tmp_path / "provisioning/datasources/telemetry.yaml").read_text())
    entry = ds["datasources"][0]
    assert entry["jsonData"]["timescaledb"] is True and entry["url"] == "db:5432"
    assert entry["secureJsonData"]["password"] == "${GRAFANA_DB_PASSWORD}"
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/lab.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


def test_build_is_deterministic_and_removes_stale_files(tmp_path: Path) -> None:
    invoke(["dashboards", "build", "--out", str(tmp_path)])
    first = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    (tmp_path / "dashboards" / "old-uid.json").write_text("{}")
    invoke(["dashboards", "build", "--out", str(tmp_path)])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == first


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    server = GrafanaStandIn().start()  # a stand-in: no Grafana server can run here
    try:
        yield server
    finally:
        server.stop()


def test_provision_twice_reports_no_change_the_second_time(grafana: GrafanaStandIn) -> None:
    args = ["dashboards", "provision", "--url", grafana.url, "--token", grafana.token]
    first = invoke(args)
    assert first.exit_code == 0, first.output
    assert "8 created, 0 updated, 0 unchanged" in first.output
    second = invoke(args)
    assert "0 created, 0 updated, 8 unchanged" in second.output


def test_provision_without_url_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    monkeypatch.delenv("LABCTL_GRAFANA_URL", raising=False)
    from lab_controller.cli import main

    monkeypatch.setattr("sys.argv", ["labctl", "dashboards", "provision"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1


@pytest.fixture(scope="module")
def filled_db(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    migrate(db_dsn)
    labdata.fill(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        yield conn


def test_check_runs_every_query(filled_db: psycopg.Connection[Any]) -> None:
    obj = {"sql_runner": make_runner(filled_db)}
    args = ["dashboards", "check", "--from", "2026-10-01T00:00:00Z",
            "--to", labdata.NOW.isoformat(), "--var", f"trainee={labdata.REVIEW_TRAINEE}"]
    result = invoke(args, obj)
    assert result.exit_code == 0, result.output
    assert "0 with problems" in result.output
    as_json = invoke([*args, "--json", "--dashboard", "vr-lab-cohort"], obj)
    lines = [json.loads(line) for line in as_json.output.splitlines()]
    assert {line["dashboard"] for line in lines} == {"vr-lab-cohort"}
    assert all(line["problems"] == [] for line in lines)


def test_check_fails_on_broken_sql(filled_db: psycopg.Connection[Any]) -> None:
    run = make_runner(filled_db)

    def broken(sql: str) -> Any:
        return run(sql.replace("window_score", "window_scor"))

    result = CliRunner().invoke(cli, ["dashboards", "check", "--dashboard", "vr-lab-live-class"],
                                obj={"sql_runner": broken})
    assert result.exit_code == 1
    assert "FAIL" in result.output and "window_scor" in result.output
    assert isinstance(result.exception, CliError)
    assert "queries have problems" in str(result.exception)


def test_check_with_no_database_is_one_error() -> None:
    def unreachable(sql: str) -> Any:
        raise ConnectionError("connection refused")

    result = CliRunner().invoke(cli, ["dashboards", "check"], obj={"sql_runner": unreachable})
    assert result.exit_code == 1
    assert "cannot query the database: connection refused" in str(result.exception)
    assert result.output == ""  # not one failure line per query


def test_check_through_telemetry(filled_db: psycopg.Connection[Any], db_dsn: str) -> None:
    """Without an injected runner, check goes through telemetry.queries.run_sql."""
    args = ["dashboards", "check", "--dsn", db_dsn, "--dashboard", "vr-lab-cohort",
            "--from", "now-60d", "--to", labdata.NOW.isoformat()]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "0 with problems" in result.output
