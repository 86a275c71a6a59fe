"""The competition dashboard: every panel's SQL on a real database (empty, then filled with a
competition through the same telemetry functions the service uses), and the SQL standings
equal the Python leaderboard (same totals, ranks and tie-break)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards.boards import competition as board
from dashboards.check import Column, Result, check_dashboard
from dashboards.macros import TimeRange
from dashboards.queries import competition as cq
from lab_controller.competition import rules
from lab_controller.competition.service import Competitions
from telemetry import competition as tcomp
from telemetry import reference as tref
from telemetry.migrate import migrate

CID = "dash-cup"
PROVISIONAL = "00000000-0000-4000-8000-0000000000f0"
NOW = datetime.now(tz=UTC)
RANGE = TimeRange(NOW - timedelta(days=1), NOW, timedelta(minutes=1))


def runner(conn: psycopg.Connection[Any]) -> Callable[[str], Result]:
    def run(sql: str) -> Result:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            cur = conn.execute(sql.encode())
            rows = cur.fetchall()
            cols = []
            for d in cur.description or []:
                info = conn.adapters.types.get(d.type_code)
                cols.append(Column(d.name, info.name if info else str(d.type_code)))
        return Result(cols, rows)

    return run


def fill(dsn: str) -> None:
    for site in ("site-a", "site-b"):
        tref.upsert_site(dsn, site, name=site)
    tcomp.create_competition(dsn, CID, "Dashboard cup",
                             rules.merged_rules({"aspects": ["bead"], "judgement_weight": 0.25}))
    tcomp.add_event(dsn, CID, "ev", "fillet_t_joint_h", "r", 1, 120.0, 30.0)
    tcomp.open_competition(dsn, CID, {"ev": ({"rubric_id": "r"}, "sha", "k")})
    tcomp.add_heat(dsn, CID, "h1", "ev")
    tcomp.add_heat(dsn, CID, "h2", "ev")
    scores = {"A": (80.004, 0.7), "B": (80.0, 0.8), "C": (91.0, 0.9), "D": (79.0, 0.5),
              "E": (None, None), "F": (None, None)}
    entries = []
    for i, comp in enumerate(scores):
        tcomp.add_competitor(dsn, CID, comp, 10 + i, "site-a" if i % 2 else "site-b")
        entries.append({"competitor_id": comp, "site_id": "site-a" if i % 2 else "site-b",
                        "rig_id": f"r{i}", "session_id": PROVISIONAL if comp == "F" else None,
                        "start_state": "failed" if comp == "E" else "started",
                        "reason": "dead (no heartbeat)" if comp == "E" else "",
                        "start_time_us": None, "start_offset_ms": 1.5})
    for heat, part in (("h1", entries[:3]), ("h2", entries[3:])):
        tcomp.record_heat_start(dsn, CID, heat, state="started", agreed_start_us=0,
                                tolerance_ms=100.0, start_spread_ms=3.2,
                                sites=[{"site_id": "site-a", "clock_offset_ms": 0.1,
                                        "clock_rtt_ms": 0.2, "rigs_ready": 2}],
                                entries=part, detail={})
    for comp, (score, tiw) in scores.items():
        if score is None:
            continue
        tcomp.insert_mark(dsn, {
            "competition_id": CID, "event_id": "ev", "heat_id": "h1", "competitor_id": comp,
            "site_id": "site-a", "session_id": "00000000-0000-4000-8000-00000000000" + comp[0]
            .replace("A", "1").replace("B", "2").replace("C", "3").replace("D", "4"),
            "purpose": "official", "rubric_id": "r", "rubric_version": 1, "rubric_sha256": "s",
            "kernel_version": "k", "seq_lo": 0, "seq_hi": 9, "frames": 10, "data_sha256": "d",
            "mark_sha256": "m", "score": score, "passed": True,
            "result": {"components": {"time_in_window": tiw}}, "result_text": "{}"})
    for comp, marks in (("A", (2, 2, 2)), ("B", (2, 2, 2)), ("C", (3, 1, 3)), ("D", (1, 1))):
        for judge, m in zip(("J1", "J2", "J3"), marks, strict=False):
            tcomp.put_judge_mark(dsn, CID, "ev", comp, "bead", judge, m)
    with psycopg.connect(dsn) as conn:  # F: the live pipeline's result, no referee mark yet
        conn.execute("INSERT INTO results (session_id, rubric_id, rubric_version, site_id, "
                     "final_score, passed, components) VALUES (%s, 'r', 1, 'site-b', 84.5, "
                     "true, '{\"time_in_window\": 0.6}')", (PROVISIONAL,))
    off = tcomp.marks(dsn, CID, "ev")[0]
    tcomp.insert_appeal(dsn, {"competition_id": CID, "event_id": "ev", "competitor_id": "A",
                              "reason": "r", "official_mark_id": off["mark_id"],
                              "appeal_mark_id": off["mark_id"], "official_score": 80.0,
                              "appeal_score": 82.5, "difference": {}})


def test_every_panel_runs_on_an_empty_then_a_filled_database(db_dsn: str) -> None:
    migrate(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        checks = check_dashboard(board.build(), runner(conn), RANGE)
        assert checks and all(c.ok for c in checks), [str(c) for c in checks if not c.ok]
        fill(db_dsn)
        checks = check_dashboard(board.build(), runner(conn), RANGE)
        assert all(c.ok for c in checks), [str(c) for c in checks if not c.ok]
        panels = [c for c in checks if not c.where.startswith("variable")]
        assert all(c.row_count > 0 for c in panels), [(c.where, c.row_count) for c in panels]


@pytest.mark.parametrize("heat", [None, "h1"])
def test_sql_standings_equal_the_python_leaderboard(db_dsn: str, heat: str | None) -> None:
    if tcomp.competition(db_dsn, CID) is None:
        migrate(db_dsn)
        fill(db_dsn)
    q = cq.HEAT_STANDINGS if heat else cq.STANDINGS
    sql = q.sql.replace("$competition", CID).replace("$event", "ev").replace(
        "($heat)", f"('{heat}')").replace("$__timeFilter(sw.time)", "true")
    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute(sql.encode()).fetchall()
    py = Competitions(db_dsn).leaderboard(CID, "ev", heat)
    assert [(r[0], r[2], None if r[5] is None else float(r[5])) for r in rows] == \
        [(s.rank, s.competitor_id, s.total) for s in py]
    if heat is None:  # C first; A and B equal at 2 decimals, B wins on time in window
        # F is live (pipeline result 84.5, judges pending: counts 0 until they mark)
        assert [s.competitor_id for s in py][:4] == ["C", "B", "A", "F"]
        assert py[3].state == "provisional" and "provisional" in rows[3][8]
        assert py[-1].competitor_id == "E" and py[-1].rank is None
