"""A school on day one: every dashboard loads on a freshly migrated, empty database.

With no rows, Grafana gives each query variable a single "None" option (value ''); every
variable, annotation and panel query must still run (empty results, no SQL errors).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import labdata
import psycopg
import pytest
from labdata import make_runner

from dashboards import all_dashboards
from dashboards.check import check_dashboard
from dashboards.macros import TimeRange
from telemetry.migrate import migrate


@pytest.fixture(scope="module")
def empty(db_dsn: str) -> Any:
    migrate(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize("model", all_dashboards(), ids=lambda m: m["uid"])
def test_every_query_runs_on_an_empty_database(empty: Any, model: dict[str, Any]) -> None:
    rng = TimeRange(labdata.NOW - timedelta(days=7), labdata.NOW, timedelta(minutes=5))
    checks = check_dashboard(model, make_runner(empty), rng)
    assert checks
    assert all(c.ok for c in checks), "\n".join(str(c) for c in checks if not c.ok)
    # Aggregates may answer one row of NULLs/zeros; nothing may invent data.
    assert all(c.row_count <= 1 for c in checks if not c.where.startswith("variable"))
