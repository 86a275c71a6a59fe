"""The competition dashboard: every panel's SQL on a real database (empty, then filled with a
competition through the same telemetry functions the service uses), and the SQL standings
equal the Python leaderboard (same totals, ranks and tie-break)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from dashboards.boards import competition as board
from dashboards.check import Column, Result, check_dashboard
from dashboards.macros import TimeRange
from dashboards.queries import competition as cq
from lab_controller.competition.service import Competitions
from telemetry import competition as tcomp
from telemetry.migrate import migrate


def _competition_data() -> ModuleType:
    """The competition fixture shared with tests/dashboards (labdata builds on it)."""
    path = Path(__file__).resolve().parents[1] / "dashboards" / "competition_data.py"
    spec = importlib.util.spec_from_file_location("competition_data_for_board", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DATA = _competition_data()
CID: str = DATA.CID
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


def test_every_panel_runs_on_an_empty_then_a_filled_database(db_dsn: str) -> None:
    migrate(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        checks = check_dashboard(board.build(), runner(conn), RANGE)
        assert checks and all(c.ok for c in checks), [str(c) for c in checks if not c.ok]
        DATA.fill(db_dsn)
        checks = check_dashboard(board.build(), runner(conn), RANGE)
        assert all(c.ok for c in checks), [str(c) for c in checks if not c.ok]
        panels = [c for c in checks if not c.where.startswith("variable")]
        assert all(c.row_count > 0 for c in panels), [(c.where, c.row_count) for c in panels]


@pytest.mark.parametrize("heat", [None, "h1"])
def test_sql_standings_equal_the_python_leaderboard(db_dsn: str, heat: str | None) -> None:
    if tcomp.competition(db_dsn, CID) is None:
        migrate(db_dsn)
        DATA.fill(db_dsn)
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
