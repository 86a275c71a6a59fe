"""Provision the folder, the data source and every dashboard through Grafana's HTTP API.

Idempotent: each object is read first and written only when it differs from the code, so a
second run reports everything `unchanged`. Uses `grafana-client` (the only Grafana import in
the project).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.common import (
    DATASOURCE_NAME,
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    Json,
)
from telemetry.schema import DASHBOARD_ROLE

Action = Literal["created", "updated", "unchanged"]

# Fields Grafana adds or bumps on every save; they say nothing about the content.
_VOLATILE_DASHBOARD_KEYS = frozenset({"id", "version"})
# Data source fields we own; Grafana adds many more (id, orgId, readOnly, typeLogoUrl, ...).
_OWNED_DATASOURCE_KEYS = ("access", "basicAuth", "database", "isDefault", "jsonData", "name",
                          "type", "url", "user")


class ProvisionError(RuntimeError):
    """Grafana refused a request or could not be reached; the message says which."""


@dataclass(frozen=True)
class DataSourceConfig:
    """How Grafana reaches the telemetry database: always as the read-only role."""

    url: str = "timescaledb:5432"
    database: str = "labctl"
    user: str = DASHBOARD_ROLE
    password_env: str = "GRAFANA_DB_PASSWORD"
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "require"


def datasource_model(config: DataSourceConfig, password: str | None = None) -> Json:
    """The data source as the HTTP API takes it (and, minus the password, as stored)."""
    model: Json = {
        "access": "proxy",
        "basicAuth": False,
        "database": config.database,
        "isDefault": True,
        "jsonData": {
            "database": config.database,
            "postgresVersion": 1500,
            "sslmode": config.sslmode,
            # Our writer batches at sub-second rates; 1 s is the finest interval worth drawing.
            "timeInterval": "1s",
            "timescaledb": True,
        },
        "name": DATASOURCE_NAME,
        "type": DATASOURCE_TYPE,
        "uid": DATASOURCE_UID,
        "url": config.url,
        "user": config.user,
    }
    if password is not None:
        model["secureJsonData"] = {"password": password}
    return model


@dataclass(frozen=True)
class Change:
    """What provisioning did to one object."""

    kind: Literal["folder", "datasource", "dashboard"]
    uid: str
    title: str
    action: Action

    def __str__(self) -> str:
        return f"{self.action:9} {self.kind:10} {self.uid} ({self.title})"


def connect(url: str, token: str | None, timeout: float = 10.0) -> GrafanaApi:
    """A client for `url` with a service-account token (or user:password in the URL)."""
    api: GrafanaApi = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    return api


def _get(call: Any, *args: Any) -> Json | None:
    """The object, or None on 404 (grafana-client raises for every 4xx)."""
    try:
        result: Json = call(*args)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise
    return result


def _ensure_folder(api: GrafanaApi) -> Change:
    folders: Any = api.folder  # grafana-client's element methods are untyped
    existing = _get(folders.get_folder, FOLDER_UID)
    if existing is None:
        folders.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        action: Action = "created"
    elif existing.get("title") != FOLDER_TITLE:
        folders.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
        action = "updated"
    else:
        action = "unchanged"
    return Change("folder", FOLDER_UID, FOLDER_TITLE, action)


def _ensure_datasource(api: GrafanaApi, config: DataSourceConfig, password: str | None) -> Change:
    datasources: Any = api.datasource
    wanted = datasource_model(config, password)
    existing = _get(datasources.get_datasource_by_uid, DATASOURCE_UID)
    if existing is None:
        datasources.create_datasource(wanted)
        action: Action = "created"
    else:
        differs = any(existing.get(k) != wanted[k] for k in _OWNED_DATASOURCE_KEYS)
        # The stored password cannot be read back; it is sent when we update anyway.
        if differs:
            datasources.update_datasource_by_uid(DATASOURCE_UID, wanted)
            action = "updated"
        else:
            action = "unchanged"
    return Change("datasource", DATASOURCE_UID, DATASOURCE_NAME, action)


def _comparable(model: Mapping[str, Any]) -> Json:
    return {k: v for k, v in model.items() if k not in _VOLATILE_DASHBOARD_KEYS}


def _ensure_dashboard(api: GrafanaApi, model: Json) -> Change:
    boards: Any = api.dashboard
    uid, title = model["uid"], model["title"]
    existing = _get(boards.get_dashboard, uid)
    if existing is not None:
        same_folder = existing.get("meta", {}).get("folderUid") == FOLDER_UID
        if same_folder and _comparable(existing["dashboard"]) == _comparable(model):
            return Change("dashboard", uid, title, "unchanged")
    boards.update_dashboard(
        {
            "dashboard": {**_comparable(model), "id": None},
            "folderUid": FOLDER_UID,
            "message": "labctl dashboards provision",
            "overwrite": True,
        }
    )
    return Change("dashboard", uid, title, "created" if existing is None else "updated")


def provision(
    api: GrafanaApi,
    dashboards: Iterable[Json],
    config: DataSourceConfig | None = None,
    password: str | None = None,
) -> list[Change]:
    """Create or update the folder, the data source and `dashboards`; say what changed.

    Raises ProvisionError (callers need not know grafana-client's exception types).
    """
    try:
        changes = [_ensure_folder(api),
                   _ensure_datasource(api, config or DataSourceConfig(), password)]
        changes.extend(_ensure_dashboard(api, model) for model in dashboards)
    except GrafanaException as exc:
        raise ProvisionError(f"Grafana refused: {exc}") from exc
    except OSError as exc:  # connection refused, name not resolved, ...
        raise ProvisionError(f"cannot reach Grafana: {exc}") from exc
    return changes
