"""Dashboards and provisioning as files a Grafana container mounts (see deploy/).

Layout of the output folder (mirrors Grafana's own paths):

    provisioning/datasources/telemetry.yaml   data source, read-only role, timescaledb: true
    provisioning/dashboards/lab.yaml          file provider: folder "VR lab", no UI edits
    dashboards/<uid>.json                     one file per dashboard, sorted keys
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from dashboards.common import FOLDER_TITLE, FOLDER_UID, Json, query_name
from dashboards.provision import DataSourceConfig, datasource_model

DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
"""Where the Grafana container sees `dashboards/` (deploy/compose.yaml mounts it there)."""


def dashboard_json(model: Json) -> str:
    """Stable JSON text: sorted keys, two-space indent, trailing newline (readable diffs)."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def datasource_provisioning(config: DataSourceConfig) -> Json:
    """Grafana's data source provisioning file; the password comes from the environment."""
    model = datasource_model(config)
    entry = {
        "access": model["access"],
        "isDefault": model["isDefault"],
        "jsonData": model["jsonData"],
        "name": model["name"],
        "secureJsonData": {"password": "${" + config.password_env + "}"},
        "type": model["type"],
        "uid": model["uid"],
        "url": model["url"],
        "user": model["user"],
        "editable": False,
    }
    return {"apiVersion": 1, "datasources": [entry]}


def dashboard_provider() -> Json:
    """Grafana's dashboard provider file: our JSON folder, in the lab folder, code-owned."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "allowUiUpdates": False,
                "disableDeletion": False,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "name": "vr-lab",
                "options": {"path": DASHBOARDS_MOUNT},
                "type": "file",
                "updateIntervalSeconds": 30,
            }
        ],
    }


def _yaml(data: Json) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


def write_all(
    out: Path, dashboards: Iterable[Json], config: DataSourceConfig | None = None
) -> list[Path]:
    """Write every file into `out`; remove stale dashboard JSON; return the paths written."""
    config = config or DataSourceConfig()
    files: dict[Path, str] = {
        out / "provisioning" / "datasources" / "telemetry.yaml": _yaml(
            datasource_provisioning(config)
        ),
        out / "provisioning" / "dashboards" / "lab.yaml": _yaml(dashboard_provider()),
    }
    for model in dashboards:
        files[out / "dashboards" / f"{model['uid']}.json"] = dashboard_json(model)
    dash_dir = out / "dashboards"
    if dash_dir.is_dir():
        for stale in dash_dir.glob("*.json"):
            if stale not in files:
                stale.unlink()
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)


def _panels(model: Json) -> list[Json]:
    """Every panel, rows' nested panels included (collapsed rows keep theirs inside)."""
    found: list[Json] = []
    for panel in model.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def outline(dashboards: Sequence[Json]) -> str:
    """dashboard → panels → query names: what a screenshot would show, in text."""
    lines: list[str] = []
    for model in dashboards:
        lines.append(f"{model['title']}  [uid {model['uid']}]")
        variables = [v["name"] for v in model.get("templating", {}).get("list", [])]
        if variables:
            lines.append("  variables: " + ", ".join(variables))
        for anno in model.get("annotations", {}).get("list", []):
            if "target" in anno:
                lines.append(f"  annotation {anno['name']}: {query_name(anno['target']['rawSql'])}")
        for panel in _panels(model):
            if panel["type"] == "row":
                lines.append(f"  == {panel['title']} ==")
                continue
            names = ", ".join(query_name(t.get("rawSql", "")) for t in panel.get("targets", []))
            repeat = f" (one per ${panel['repeat']})" if "repeat" in panel else ""
            lines.append(f"  - {panel['title']} [{panel['type']}]{repeat}: {names}")
    return "\n".join(lines)


__all__ = [
    "DASHBOARDS_MOUNT",
    "dashboard_json",
    "dashboard_provider",
    "datasource_provisioning",
    "outline",
    "write_all",
]
