"""`provision` through grafana-client: creates, then changes nothing on the second run.

The HTTP server here is a local stand-in for the few Grafana endpoints used, because no
Grafana server can be installed on these machines (see grafana_standin.py). The last test runs
the same code against a real Grafana when GRAFANA_URL is set.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator

import pytest
from grafana_standin import GrafanaStandIn

from dashboards import all_dashboards
from dashboards.common import DATASOURCE_UID, FOLDER_UID
from dashboards.provision import DataSourceConfig, ProvisionError, connect, provision


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    server = GrafanaStandIn().start()
    try:
        yield server
    finally:
        server.stop()


def test_first_run_creates_everything(grafana: GrafanaStandIn) -> None:
    models = all_dashboards()
    changes = provision(connect(grafana.url, grafana.token), models)
    assert {c.action for c in changes} == {"created"}
    assert [c.kind for c in changes] == ["folder", "datasource"] + ["dashboard"] * len(models)
    assert set(grafana.dashboards) == {m["uid"] for m in models}
    assert all(d["meta"]["folderUid"] == FOLDER_UID for d in grafana.dashboards.values())
    ds = grafana.datasources[DATASOURCE_UID]
    assert ds["jsonData"]["timescaledb"] is True
    assert ds["user"] == "grafana_reader"  # the read-only role, never the writer


def test_second_run_changes_nothing(grafana: GrafanaStandIn) -> None:
    api = connect(grafana.url, grafana.token)
    provision(api, all_dashboards(), password="s3cret")
    writes_after_first = len(grafana.writes())
    versions = {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()}
    changes = provision(api, all_dashboards())
    assert {c.action for c in changes} == {"unchanged"}
    assert len(grafana.writes()) == writes_after_first  # not one POST/PUT the second time
    assert {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()} == versions


def test_only_what_differs_is_updated(grafana: GrafanaStandIn) -> None:
    api = connect(grafana.url, grafana.token)
    models = all_dashboards()
    provision(api, models)
    edited = copy.deepcopy(models)
    edited[1]["panels"][0]["title"] = "Result (edited in code)"
    grafana.folders[FOLDER_UID]["title"] = "renamed in the UI"
    changes = {(c.kind, c.uid): c.action for c in provision(api, edited)}
    assert changes[("folder", FOLDER_UID)] == "updated"
    assert changes[("dashboard", models[1]["uid"])] == "updated"
    assert changes[("datasource", DATASOURCE_UID)] == "unchanged"
    assert sum(a == "updated" for a in changes.values()) == 2
    stored = grafana.dashboards[models[1]["uid"]]["dashboard"]
    assert stored["panels"][0]["title"] == "Result (edited in code)"
    assert stored["version"] == 2
    # A different database host updates the data source, once.
    other = DataSourceConfig(url="db.lab.internal:5432")
    assert [c.action for c in provision(api, [], other) if c.kind == "datasource"] == ["updated"]
    assert [c.action for c in provision(api, [], other) if c.kind == "datasource"] == [
        "unchanged"
    ]


def test_bad_token_is_refused(grafana: GrafanaStandIn) -> None:
    with pytest.raises(ProvisionError, match="Unauthorized"):
        provision(connect(grafana.url, "wrong"), all_dashboards())
    assert not grafana.writes()


def test_unreachable_grafana_is_a_provision_error() -> None:
    server = GrafanaStandIn().start()
    url = server.url
    server.stop()  # nothing listens on that port any more
    with pytest.raises(ProvisionError, match=r"reach|refused|Connection"):
        provision(connect(url, "t", timeout=2), all_dashboards())


@pytest.mark.skipif(
    not os.environ.get("GRAFANA_URL"),
    reason="needs a real Grafana: set GRAFANA_URL (and GRAFANA_TOKEN, an admin service-account "
    "token); none can be installed on these machines",
)
def test_provision_real_grafana() -> None:
    api = connect(os.environ["GRAFANA_URL"], os.environ.get("GRAFANA_TOKEN"))
    provision(api, all_dashboards())
    again = provision(api, all_dashboards())
    assert {c.action for c in again} == {"unchanged"}, [str(c) for c in again]
