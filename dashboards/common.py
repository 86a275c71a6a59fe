"""House style: the one place that decides how our panels, variables and dashboards look.

Dashboard modules only assemble panels from these factories, so every time series, stat tile
and table looks alike and a style change is one edit. Plain dicts in Grafana's JSON model
(no SDK dependency); `schemaVersion` is one Grafana 11/12 reads without migrating.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Json = dict[str, Any]

SCHEMA_VERSION = 41
"""Grafana 12 writes 41-42 (grafana.md); anything in ACCEPTED_SCHEMA_VERSIONS loads unmigrated."""
ACCEPTED_SCHEMA_VERSIONS = range(39, 44)

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "lab-telemetry"
DATASOURCE_NAME = "Lab telemetry"
FOLDER_UID = "vr-lab"
FOLDER_TITLE = "VR lab"
TAGS = ("vr-lab",)

DEPRECATED_PANEL_TYPES = frozenset({"graph", "singlestat", "table-old", "grafana-piechart-panel"})

# Colours from Grafana's palette names so they follow light and dark themes.
GREEN, YELLOW, ORANGE, RED, BLUE, GREY = "green", "yellow", "orange", "red", "blue", "text"

GRID_WIDTH = 24
"""Grafana's dashboard grid is 24 columns wide."""

QUERY_HEADER = re.compile(r"^-- query: ([\w.]+)")


@dataclass(frozen=True)
class Query:
    """A named SQL query; the name heads the SQL as a comment (stripped before it runs)."""

    name: str
    sql: str
    format: Literal["table", "time_series"] = "table"

    def raw_sql(self) -> str:
        """The SQL as stored in the dashboard JSON."""
        return f"-- query: {self.name}\n{self.sql.strip()}\n"


def query_name(raw_sql: str) -> str:
    """The query name written by `Query.raw_sql`, or `?` for foreign SQL."""
    match = QUERY_HEADER.match(raw_sql)
    return match.group(1) if match else "?"


def datasource() -> Json:
    """Reference to the telemetry data source, by uid (names may differ between schools)."""
    return {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}


def target(query: Query, ref_id: str = "A") -> Json:
    """A raw-SQL target in code mode."""
    return {
        "datasource": datasource(),
        "editorMode": "code",
        "format": query.format,
        "rawQuery": True,
        "rawSql": query.raw_sql(),
        "refId": ref_id,
    }


# --- field config pieces ---------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> Json:
    """Absolute thresholds; the first step's value is None (the base colour)."""
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def value_mappings(mapping: dict[str, tuple[str, str]]) -> list[Json]:
    """Value → (text, colour) mappings, e.g. status codes to words the instructor reads."""
    options = {
        key: {"color": color, "index": i, "text": text}
        for i, (key, (text, color)) in enumerate(mapping.items())
    }
    return [{"options": options, "type": "value"}]


def override(field_name: str, **properties: Any) -> Json:
    """Per-field settings for the field called `field_name` (a column the query returns).

    A field given its own thresholds is also coloured by them (else a time series would keep
    its palette colour and a tile its default).
    """
    if "thresholds" in properties and "color" not in properties:
        properties["color"] = {"mode": "thresholds"}
    return {
        "matcher": {"id": "byName", "options": field_name},
        "properties": [{"id": key, "value": value} for key, value in sorted(properties.items())],
    }


def _field_config(
    unit: str | None,
    steps: Json | None,
    overrides: Sequence[Json],
    custom: Json | None,
    decimals: int | None,
    minimum: float | None,
    maximum: float | None,
    mappings: list[Json] | None,
    color_mode: Literal["thresholds", "palette-classic"],
) -> Json:
    """Field defaults; `color_mode` "thresholds" makes stat tiles and table cells take the
    threshold colour (the alert colouring), "palette-classic" gives each series its own."""
    defaults: Json = {"color": {"mode": color_mode}}
    if unit:
        defaults["unit"] = unit
    defaults["thresholds"] = steps or thresholds((None, GREEN))
    if custom is not None:
        defaults["custom"] = custom
    if decimals is not None:
        defaults["decimals"] = decimals
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if mappings:
        defaults["mappings"] = mappings
    return {"defaults": defaults, "overrides": list(overrides)}


# --- panels ------------------------------------------------------------------------------


def _panel(
    kind: str,
    title: str,
    queries: Sequence[Query],
    *,
    description: str,
    options: Json,
    field_config: Json,
    width: int,
    height: int,
    transformations: Sequence[Json] = (),
    repeat: str | None = None,
    max_per_row: int = 6,
) -> Json:
    panel: Json = {
        "datasource": datasource(),
        "description": description,
        "fieldConfig": field_config,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "options": options,
        "targets": [target(q, chr(ord("A") + i)) for i, q in enumerate(queries)],
        "title": title,
        "type": kind,
    }
    if transformations:
        panel["transformations"] = list(transformations)
    if repeat:
        panel["repeat"] = repeat
        panel["repeatDirection"] = "h"
        panel["maxPerRow"] = max_per_row
    return panel


_LEGEND = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
_TOOLTIP = {"mode": "multi", "sort": "none"}


def timeseries(
    title: str,
    *queries: Query,
    description: str,
    unit: str | None = None,
    steps: Json | None = None,
    overrides: Sequence[Json] = (),
    width: int = 12,
    height: int = 8,
    draw: Literal["line", "points", "bars"] = "line",
    threshold_style: Literal["off", "line", "area", "line+area"] = "off",
    minimum: float | None = None,
    maximum: float | None = None,
    repeat: str | None = None,
    max_per_row: int = 6,
) -> Json:
    """The one time-series look: thin lines, no fill, legend below, shared tooltip."""
    custom = {
        "drawStyle": draw,
        "fillOpacity": 0 if draw == "line" else 60,
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "never" if draw == "line" else "always",
        "spanNulls": False,
        "thresholdsStyle": {"mode": threshold_style},
    }
    return _panel(
        "timeseries",
        title,
        queries,
        description=description,
        options={"legend": _LEGEND, "tooltip": _TOOLTIP},
        field_config=_field_config(
            unit, steps, overrides, custom, None, minimum, maximum, None, "palette-classic"
        ),
        width=width,
        height=height,
        repeat=repeat,
        max_per_row=max_per_row,
    )


def stat(
    title: str,
    *queries: Query,
    description: str,
    unit: str | None = None,
    steps: Json | None = None,
    overrides: Sequence[Json] = (),
    mappings: list[Json] | None = None,
    width: int = 6,
    height: int = 4,
    color_mode: Literal["value", "background", "none"] = "background",
    all_values: bool = False,
    fields: str = "",
    text_mode: str = "auto",
    decimals: int | None = None,
    repeat: str | None = None,
) -> Json:
    """A stat tile; `all_values` shows one tile per row (e.g. one per rig)."""
    options = {
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": all_values},
        "showPercentChange": False,
        "textMode": text_mode,
        "wideLayout": True,
    }
    return _panel(
        "stat",
        title,
        queries,
        description=description,
        options=options,
        field_config=_field_config(
            unit, steps, overrides, None, decimals, None, None, mappings, "thresholds"
        ),
        width=width,
        height=height,
        repeat=repeat,
    )


def table(
    title: str,
    *queries: Query,
    description: str,
    unit: str | None = None,
    steps: Json | None = None,
    overrides: Sequence[Json] = (),
    mappings: list[Json] | None = None,
    width: int = 12,
    height: int = 8,
    sort_by: str | None = None,
) -> Json:
    """A table; colour cells through `overrides` (`custom.cellOptions`)."""
    options: Json = {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True}
    if sort_by:
        options["sortBy"] = [{"desc": True, "displayName": sort_by}]
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}
    return _panel(
        "table",
        title,
        queries,
        description=description,
        options=options,
        field_config=_field_config(
            unit, steps, overrides, custom, None, None, None, mappings, "thresholds"
        ),
        width=width,
        height=height,
    )


def barchart(
    title: str,
    *queries: Query,
    description: str,
    unit: str | None = None,
    x_field: str | None = None,
    stacked: bool = False,
    horizontal: bool = False,
    steps: Json | None = None,
    overrides: Sequence[Json] = (),
    width: int = 12,
    height: int = 8,
    maximum: float | None = None,
) -> Json:
    """Bars over a category (string) column; one series per numeric column."""
    options: Json = {
        "barWidth": 0.8,
        "groupWidth": 0.7,
        "legend": _LEGEND,
        "orientation": "horizontal" if horizontal else "auto",
        "showValue": "auto",
        "stacking": "normal" if stacked else "none",
        "tooltip": _TOOLTIP,
        "xTickLabelRotation": 0,
    }
    if x_field:
        options["xField"] = x_field
    custom = {"fillOpacity": 80, "lineWidth": 1}
    return _panel(
        "barchart",
        title,
        queries,
        description=description,
        options=options,
        field_config=_field_config(
            unit, steps, overrides, custom, None, 0, maximum, None, "palette-classic"
        ),
        width=width,
        height=height,
    )


def bargauge(
    title: str,
    *queries: Query,
    description: str,
    unit: str | None = None,
    steps: Json | None = None,
    width: int = 12,
    height: int = 8,
    minimum: float | None = 0,
    maximum: float | None = None,
) -> Json:
    """Horizontal bars, one per row (name column + value column)."""
    options = {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
        "showUnfilled": True,
        "valueMode": "color",
    }
    return _panel(
        "bargauge",
        title,
        queries,
        description=description,
        options=options,
        field_config=_field_config(
            unit, steps, (), None, None, minimum, maximum, None, "thresholds"
        ),
        width=width,
        height=height,
    )


def histogram(
    title: str,
    *queries: Query,
    description: str,
    unit: str | None = None,
    bucket_size: float | None = None,
    width: int = 12,
    height: int = 8,
) -> Json:
    """Distribution of the numeric column(s)."""
    options: Json = {"combine": False, "legend": _LEGEND, "tooltip": _TOOLTIP}
    if bucket_size is not None:
        options["bucketSize"] = bucket_size
    return _panel(
        "histogram",
        title,
        queries,
        description=description,
        options=options,
        field_config=_field_config(
            unit, None, (), {"fillOpacity": 80}, None, None, None, None, "palette-classic"
        ),
        width=width,
        height=height,
    )


def piechart(
    title: str, *queries: Query, description: str, width: int = 6, height: int = 8
) -> Json:
    """Shares of a whole, one slice per row (name column + value column)."""
    options = {
        "displayLabels": ["name", "value"],
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True},
        "pieType": "donut",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
        "tooltip": _TOOLTIP,
    }
    return _panel(
        "piechart",
        title,
        queries,
        description=description,
        options=options,
        field_config=_field_config(
            None, None, (), None, None, None, None, None, "palette-classic"
        ),
        width=width,
        height=height,
    )


def state_timeline(
    title: str,
    *queries: Query,
    description: str,
    mappings: list[Json],
    width: int = 24,
    height: int = 6,
) -> Json:
    """States over time (e.g. rig online/offline), coloured by value mappings."""
    options = {
        "alignValue": "left",
        "legend": _LEGEND,
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "auto",
        "tooltip": _TOOLTIP,
    }
    custom = {"fillOpacity": 80, "lineWidth": 0}
    return _panel(
        "state-timeline",
        title,
        queries,
        description=description,
        options=options,
        field_config=_field_config(
            None, None, (), custom, None, None, None, mappings, "thresholds"
        ),
        width=width,
        height=height,
    )


def row(title: str) -> Json:
    """A collapsible section header."""
    return {
        "collapsed": False,
        "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": 0},
        "panels": [],
        "title": title,
        "type": "row",
    }


def layout(panels: Iterable[Json]) -> list[Json]:
    """Flow panels left to right, wrapping at 24 columns; assigns ids and grid positions."""
    placed: list[Json] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        pos = panel["gridPos"]
        if panel["type"] == "row" or x + pos["w"] > GRID_WIDTH:
            y += row_height
            x = row_height = 0
        pos["x"], pos["y"] = x, y
        panel["id"] = panel_id
        x += pos["w"]
        row_height = max(row_height, pos["h"])
        if panel["type"] == "row":
            y, x, row_height = y + 1, 0, 0
        placed.append(panel)
    return placed


# --- variables and annotations -----------------------------------------------------------


def query_variable(
    name: str,
    label: str,
    query: Query,
    *,
    multi: bool = False,
    include_all: bool = False,
    description: str = "",
) -> Json:
    """A variable filled from SQL (`__value`/`__text` columns), refreshed with the time range."""
    variable: Json = {
        "current": {},
        "datasource": datasource(),
        "definition": query.raw_sql(),
        "description": description,
        "includeAll": include_all,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": query.raw_sql(),
        "refresh": 2,  # on time range change: classes and sessions appear during the day
        "regex": "",
        "skipUrlSync": False,
        "sort": 0,  # keep the SQL's ORDER BY
        "type": "query",
    }
    return variable


def annotation(name: str, query: Query, color: str, *, enabled: bool = True) -> Json:
    """An annotation layer from SQL returning `time`, `timeend` (optional), `text`, `tags`."""
    return {
        "datasource": datasource(),
        "enable": enabled,
        "iconColor": color,
        "name": name,
        "rawQuery": query.raw_sql(),
        "target": {
            "editorMode": "code",
            "format": "table",
            "rawQuery": True,
            "rawSql": query.raw_sql(),
            "refId": "Anno",
        },
    }


_BUILTIN_ANNOTATION = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def dashboard(
    uid: str,
    title: str,
    *,
    description: str,
    panels: Iterable[Json],
    variables: Sequence[Json] = (),
    annotations: Sequence[Json] = (),
    time_from: str = "now-6h",
    refresh: str = "",
    tags: Sequence[str] = (),
) -> Json:
    """A complete dashboard model with an explicit uid and the house defaults."""
    return {
        "annotations": {"list": [_BUILTIN_ANNOTATION, *annotations]},
        "description": description,
        "editable": False,  # provisioned from code: change the code, not the UI
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,  # shared crosshair
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": list(TAGS),
                "title": "VR lab",
                "type": "dashboards",
            }
        ],
        "panels": layout(panels),
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "tags": sorted({*TAGS, *tags}),
        "templating": {"list": list(variables)},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
    }
