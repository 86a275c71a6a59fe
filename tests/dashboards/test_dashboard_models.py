"""The dashboard models themselves: uids, panel types, schema version, layout, named SQL."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

import dashboards
import dashboards.queries
from dashboards import all_dashboards
from dashboards.common import (
    ACCEPTED_SCHEMA_VERSIONS,
    DATASOURCE_UID,
    DEPRECATED_PANEL_TYPES,
    GRID_WIDTH,
    Query,
    query_name,
)
from dashboards.macros import parse_interval

MODELS = all_dashboards()
EXPECTED = {
    "vr-lab-live-class": "Live class",
    "vr-lab-session-review": "Session review",
    "vr-lab-trainee-progress": "Trainee progress",
    "vr-lab-cohort": "Cohort and research",
    "vr-lab-operations": "Lab operations",
    "vr-lab-competition": "Competition",
}


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


def all_sql(model: dict[str, Any]) -> list[str]:
    sql = [t["rawSql"] for p in panels(model) for t in p["targets"]]
    sql += [v["query"] for v in model["templating"]["list"]]
    sql += [a["target"]["rawSql"] for a in model["annotations"]["list"] if "target" in a]
    return sql


def test_six_dashboards_with_explicit_unique_uids() -> None:
    assert {m["uid"]: m["title"] for m in MODELS} == EXPECTED
    assert [m["uid"] for m in MODELS] == list(EXPECTED)  # menu order, each uid once
    assert all(len(uid) <= 40 for uid in EXPECTED)  # Grafana's uid limit


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_no_deprecated_panels_and_an_accepted_schema_version(model: dict[str, Any]) -> None:
    assert model["schemaVersion"] in ACCEPTED_SCHEMA_VERSIONS
    kinds = {p["type"] for p in model["panels"]}
    assert not kinds & DEPRECATED_PANEL_TYPES
    assert kinds <= {"row", "timeseries", "stat", "table", "barchart", "bargauge", "histogram",
                     "piechart", "state-timeline"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_every_query_is_named_and_uses_our_data_source(model: dict[str, Any]) -> None:
    for panel in panels(model):
        assert panel["datasource"]["uid"] == DATASOURCE_UID
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["rawQuery"] and target["format"] in ("table", "time_series")
    assert all(query_name(sql) != "?" for sql in all_sql(model))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_sql_avoids_the_known_pitfalls(model: dict[str, Any]) -> None:
    """grafana.md's pitfalls: alias in GROUP BY, macros inside aggregates, tiny buckets,
    $__timeGroup on epoch columns, calendar-length intervals, and now() (use $__timeTo())."""
    for sql in all_sql(model):
        assert not re.search(r"GROUP BY[^;]*\$__\w+Alias", sql)
        assert not re.search(r"GROUP BY\s+time\b", sql, re.IGNORECASE)
        assert not re.search(r"\w\(\s*\$__time\(", sql)
        assert "now()" not in sql.lower()
        for interval in re.findall(r"\$__(?:timeGroup|timeGroupAlias)\([^,]+,\s*'([^']+)'", sql):
            assert parse_interval(interval).total_seconds() >= 0.001
            assert not interval.endswith(("M", "y"))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_variables_used_are_defined_and_come_first(model: dict[str, Any]) -> None:
    names = [v["name"] for v in model["templating"]["list"]]
    assert names[0] == "site"
    for position, variable in enumerate(model["templating"]["list"]):
        used = set(re.findall(r"\$(\w+)", variable["query"])) - {"__timeFilter", "__timeFrom",
                                                                  "__timeTo"}
        assert used <= set(names[:position]), variable["name"]  # only earlier variables
    for sql in all_sql(model):
        used = {u for u in re.findall(r"\$(\w+)", sql) if not u.startswith("__")}
        assert used <= set(names), used - set(names)
    for panel in panels(model):
        if "repeat" in panel:
            assert panel["repeat"] in names


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_layout_fits_the_grid_without_overlap(model: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_WIDTH
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))


def test_live_tiles_colour_struggling_and_silent_rigs() -> None:
    from dashboards.queries import live

    model = next(m for m in MODELS if m["uid"] == "vr-lab-live-class")
    tile = next(p for p in model["panels"] if p.get("repeat") == "rig")
    props = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
             for o in tile["fieldConfig"]["overrides"]}
    steps = props["out_of_window"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, live.STRUGGLE_OUT_PCT]
    assert steps[-1]["color"] != steps[0]["color"]
    assert props["since_sample"]["thresholds"]["steps"][-1] == {"color": "red",
                                                               "value": live.STALE_AFTER_S}
    status = props["status"]["mappings"][0]["options"]
    assert status[str(live.STATUS_STRUGGLING)]["color"] == "orange"
    assert status[str(live.STATUS_NO_DATA)]["color"] == "red"
    assert tile["options"]["colorMode"] == "background"
    # The alert colours only show when the field is coloured by its thresholds.
    for name in ("out_of_window", "since_sample", "score"):
        assert props[name]["color"] == {"mode": "thresholds"}, name
    grid = next(p for p in model["panels"] if p["title"] == "All rigs")
    assert grid["fieldConfig"]["defaults"]["color"] == {"mode": "thresholds"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_fields_with_thresholds_are_coloured_by_them(model: dict[str, Any]) -> None:
    for panel in panels(model):
        for ov in panel["fieldConfig"]["overrides"]:
            props = {p["id"]: p["value"] for p in ov["properties"]}
            if "thresholds" in props:
                assert props.get("color", {}).get("mode") in ("thresholds", "fixed"), (
                    panel["title"], ov["matcher"]["options"])
        if panel["type"] in ("stat", "table", "bargauge"):
            assert panel["fieldConfig"]["defaults"]["color"]["mode"] == "thresholds"


def test_query_names_match_their_constants() -> None:
    seen: set[str] = set()
    for info in pkgutil.iter_modules(dashboards.queries.__path__):
        module = importlib.import_module(f"dashboards.queries.{info.name}")
        for attr, value in vars(module).items():
            if isinstance(value, Query):
                assert value.name == f"{info.name}.{attr}"
                assert value.name not in seen
                seen.add(value.name)
    assert len(seen) >= 40


def test_no_sql_built_with_str_format() -> None:
    root = Path(dashboards.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert ".format(" not in text and "% (" not in text, path


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_panel_titles_are_unique(model: dict[str, Any]) -> None:
    titles = [p["title"] for p in panels(model)]
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
def test_hypertable_queries_are_bounded_in_time(model: dict[str, Any]) -> None:
    """Every query reading a hypertable bounds its time (chunk exclusion): a dashboard left
    open on a classroom screen must not scan months of poses every 5 s."""
    from telemetry.schema import HYPERTABLES

    for sql in all_sql(model):
        tables = {t.TABLE for t in HYPERTABLES if re.search(rf"\b{t.TABLE}\b", sql)}
        if tables:
            assert re.search(r"\$__timeFilter\(|\$__timeTo\(\)", sql), (query_name(sql), tables)
