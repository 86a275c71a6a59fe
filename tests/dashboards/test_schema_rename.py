"""A renamed column breaks these tests, not a live panel.

Two halves: renaming a column in the database only (the migration changed, schema.py did not)
makes every panel that reads it fail; renaming it in `telemetry.schema` too makes the
dashboards' SQL follow, and everything runs again.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import labdata
import psycopg
import pytest
from labdata import make_runner

import dashboards
from dashboards.check import check_dashboard
from dashboards.macros import TimeRange
from telemetry import schema
from telemetry.migrate import migrate

LIVE = TimeRange(labdata.NOW - timedelta(minutes=15), labdata.NOW, timedelta(seconds=2))
OLD, NEW = schema.ScoreWindowParams.frac_in_window, "share_in_window"


@pytest.fixture(scope="module")
def scratch(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A scratch database whose column was renamed behind the dashboards' back."""
    migrate(db_dsn)
    labdata.fill(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {schema.ScoreWindowParams.TABLE} RENAME COLUMN {OLD} TO {NEW}")
        yield conn


def _live(conn: psycopg.Connection[Any]) -> list[Any]:
    return check_dashboard(dashboards.all_dashboards()[0], make_runner(conn), LIVE)


def test_renamed_column_in_the_database_fails_the_panels_that_use_it(
    scratch: psycopg.Connection[Any],
) -> None:
    checks = _live(scratch)
    failed = {c.query for c in checks if not c.ok}
    assert failed == {"live.RIG_TILES", "live.CLASS_SUMMARY", "live.OUT_OF_WINDOW_TREND"}
    assert all(OLD in " ".join(c.problems) for c in checks if not c.ok)


@pytest.fixture
def renamed_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """telemetry.schema with the new name; the query and board modules rebuilt from it."""
    modules = ["dashboards.queries.live", "dashboards.boards.live_class"]
    monkeypatch.setattr(schema.ScoreWindowParams, "frac_in_window", NEW)
    for name in modules:
        importlib.reload(importlib.import_module(name))
    yield
    monkeypatch.undo()
    for name in modules:
        importlib.reload(importlib.import_module(name))


def test_renaming_in_schema_py_too_makes_the_sql_follow(
    scratch: psycopg.Connection[Any], renamed_schema: None
) -> None:
    checks = _live(scratch)
    assert all(c.ok for c in checks), "\n".join(str(c) for c in checks if not c.ok)
    assert any(NEW in c.sql for c in checks)
