"""Grafana dashboards as code for the VR lab, provisioned from `labctl dashboards`.

Public surface: `all_dashboards()` (the six dashboard models), `files` (JSON + provisioning
YAML), `provision` (HTTP API through grafana-client), `check` and `macros` (run every panel's
SQL the way Grafana would).
"""

from __future__ import annotations

from dashboards.common import Json


def all_dashboards() -> list[Json]:
    """Every dashboard model, in menu order."""
    from dashboards.boards import (
        cohort,
        competition,
        live_class,
        operations,
        session_review,
        trainee_progress,
    )

    return [
        live_class.build(),
        session_review.build(),
        trainee_progress.build(),
        cohort.build(),
        operations.build(),
        competition.build(),
    ]


__all__ = ["Json", "all_dashboards"]
