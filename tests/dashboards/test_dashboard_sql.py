"""Every panel, annotation and variable query of every dashboard, run on a real TimescaleDB.

The SQL is expanded exactly as Grafana would (dashboards.macros) for a realistic range, run on
the test database filled by `labdata`, and must return the columns its panel type needs —
and rows, because the data covers every panel.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import labdata
import psycopg
import pytest
from labdata import make_runner

from dashboards import all_dashboards
from dashboards.boards import (
    cohort,
    competition,
    live_class,
    operations,
    session_review,
    trainee_progress,
)
from dashboards.check import QueryCheck, check_dashboard
from dashboards.macros import TimeRange
from telemetry.migrate import migrate


@pytest.fixture(scope="module")
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    migrate(db_dsn)
    labdata.fill(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


LIVE = TimeRange(labdata.NOW - timedelta(minutes=15), labdata.NOW, timedelta(seconds=2))
HISTORY = TimeRange(labdata.NOW - timedelta(days=35), labdata.NOW, timedelta(hours=1))
LAST_HOUR = TimeRange(labdata.NOW - timedelta(hours=1), labdata.NOW, timedelta(seconds=10))
DAY = TimeRange(labdata.NOW - timedelta(hours=24), labdata.NOW, timedelta(minutes=1))

# (dashboard builder, range, pinned variables): what an instructor would look at.
VIEWS = {
    live_class.UID: (live_class.build, LIVE, {}),
    session_review.UID: (session_review.build, HISTORY, {"trainee": labdata.REVIEW_TRAINEE}),
    trainee_progress.UID: (trainee_progress.build, HISTORY, {"trainee": labdata.REVIEW_TRAINEE}),
    cohort.UID: (cohort.build, HISTORY, {}),
    operations.UID: (operations.build, LAST_HOUR, {}),
    competition.UID: (competition.build, DAY, {}),
}


def _run(conn: psycopg.Connection[Any], uid: str) -> list[QueryCheck]:
    build, rng, pins = VIEWS[uid]
    return check_dashboard(build(), make_runner(conn), rng, pins)


def test_views_cover_every_dashboard() -> None:
    assert sorted(VIEWS) == sorted(d["uid"] for d in all_dashboards())


@pytest.mark.parametrize("uid", sorted(VIEWS))
def test_every_query_runs_with_the_columns_its_panel_needs(
    conn: psycopg.Connection[Any], uid: str
) -> None:
    checks = _run(conn, uid)
    failures = [str(c) for c in checks if not c.ok]
    assert not failures, "\n".join(failures)
    empty = [str(c) for c in checks if c.row_count == 0]
    assert not empty, "no rows although the data covers it:\n" + "\n".join(empty)
    model = VIEWS[uid][0]()
    panels = [p for p in model["panels"] if p["type"] != "row"]
    checked = {c.where.split(" [")[0] for c in checks if c.where.startswith("panel ")}
    assert checked == {f"panel {p['title']}" for p in panels}


def _by_rig(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    checks = _run(conn, live_class.UID)
    table = next(c for c in checks if c.where == "panel All rigs")
    rows = make_runner(conn)(table.sql).rows
    names = [c.name for c in table.columns]
    return {row[0]: dict(zip(names, row, strict=True)) for row in rows}


def test_live_tiles_flag_struggling_and_silent_rigs(conn: psycopg.Connection[Any]) -> None:
    rigs = _by_rig(conn)
    assert set(rigs) == {"rig-01", "rig-02", "rig-03", "rig-04"}
    from dashboards.queries import live

    assert rigs["rig-01"]["status"] == live.STATUS_OK
    assert rigs["rig-04"]["status"] == live.STATUS_OK
    struggling = rigs[labdata.STRUGGLING_RIG]
    assert struggling["status"] == live.STATUS_STRUGGLING
    assert struggling["out_of_window"] > live.STRUGGLE_OUT_PCT
    assert "work_angle" in struggling["params_out"]
    silent = rigs[labdata.SILENT_RIG]
    assert silent["status"] == live.STATUS_NO_DATA
    assert silent["since_sample"] == pytest.approx(20, abs=1.5)
    assert all(0 < r["progress"] <= 100 for r in rigs.values())


def test_live_tiles_repeat_once_per_rig(conn: psycopg.Connection[Any]) -> None:
    tiles = [c for c in _run(conn, live_class.UID) if c.where.startswith("panel Rig $rig")]
    assert len(tiles) == 4
    assert all(c.row_count == 1 for c in tiles)
    # The repeated panel's single value is quoted like a multi-value variable.
    assert "IN ('rig-01')" in tiles[0].sql


def test_session_review_defaults_to_the_newest_session(conn: psycopg.Connection[Any]) -> None:
    checks = _run(conn, session_review.UID)
    sessions = next(c for c in checks if c.where == "variable session")
    assert sessions.row_count == 3
    summary = next(c for c in checks if c.where == "panel Result")
    result = make_runner(conn)(summary.sql)
    row = dict(zip([c.name for c in result.columns], result.rows[0], strict=True))
    assert 0 <= row["final_score"] <= 100 and row["duration"] == 60
    bands = [c for c in checks if c.where.startswith("panel $param")]
    assert len(bands) == 3  # the spray exercise's three parameters


def test_ops_counters_survive_a_restart(conn: psycopg.Connection[Any]) -> None:
    checks = _run(conn, operations.UID)
    by_kind = next(c for c in checks if c.query == "operations.DROPPED_BY_KIND")
    rows = make_runner(conn)(by_kind.sql).rows
    totals = {r[0]: r[1] for r in rows}
    # Increases are never negative, even though the counters went back to 0 at the restart.
    assert all(v >= 0 for v in totals.values() if v is not None)
    assert totals["late"] > 0


def test_defaults_without_pins_run_everywhere(conn: psycopg.Connection[Any]) -> None:
    """Grafana's first load (All / first value everywhere) never errors."""
    for uid, (build, rng, _) in VIEWS.items():
        checks = check_dashboard(build(), make_runner(conn), rng)
        assert all(c.ok for c in checks), uid + "\n" + "\n".join(str(c) for c in checks)


def test_plain_postgresql_expansion_also_runs(conn: psycopg.Connection[Any]) -> None:
    """Without `timescaledb: true` the floor(extract(epoch ...)) grouping must work too."""
    build, rng, pins = VIEWS[operations.UID]
    checks = check_dashboard(build(), make_runner(conn), rng, pins, timescaledb=False)
    assert all(c.ok for c in checks), "\n".join(str(c) for c in checks if not c.ok)
    assert any("floor(extract(epoch from" in c.sql for c in checks)


def test_rig_table_keeps_sites_apart(conn: psycopg.Connection[Any]) -> None:
    """rig-01 exists at both schools; only site-a's streamed in the last hour."""
    checks = _run(conn, operations.UID)
    rig_table = next(c for c in checks if c.query == "operations.RIG_TABLE")
    result = make_runner(conn)(rig_table.sql)
    names = [c.name for c in result.columns]
    rows = {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in result.rows}
    assert rows[("site-a", "rig-01")]["last_frame"] is not None
    assert rows[("site-b", "rig-01")]["last_frame"] is None
    assert rows[("site-a", labdata.SILENT_RIG)]["since_frame"] == pytest.approx(20, abs=1.5)


def test_competition_standings_use_the_lab_sessions(conn: psycopg.Connection[Any]) -> None:
    """F (finished lab session, no referee mark) counts its pipeline result; G (in the live
    class) the mean of its score windows in the range; both are marked provisional."""
    checks = _run(conn, competition.UID)
    standings = next(c for c in checks if c.query == "competition.STANDINGS")
    result = make_runner(conn)(standings.sql)
    names = [c.name for c in result.columns]
    rows = {r[2]: dict(zip(names, r, strict=True)) for r in result.rows}
    expected = {}
    for competitor, plan in labdata.competition_plans(labdata.plans(random.Random(7))).items():
        sql = ("SELECT final_score FROM results WHERE session_id = %s ORDER BY scored_at DESC"
               if competitor == "F" else
               "SELECT avg(window_score) FROM score_windows WHERE session_id = %s")
        found = conn.execute(sql, (plan.session_id,)).fetchone()
        assert found is not None and found[0] is not None
        expected[competitor] = round(float(found[0]), 2)
    for competitor, measured in expected.items():
        assert float(rows[competitor]["measured"]) == pytest.approx(measured, abs=0.006)
        assert rows[competitor]["note"].startswith("provisional")
    assert rows["E"]["rank"] is None and "dead" in rows["E"]["note"]
