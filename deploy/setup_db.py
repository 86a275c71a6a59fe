"""One-shot database set-up for deploy/: migrate, then (re)create the writer and dashboard roles.

Idempotent (safe on every `docker compose up`). The roles come from `telemetry.roles`: the
dashboard role Grafana logs in as reads every table and view except the identity tables (real
names), is read-only by default and has a statement timeout; the writer role is what the
controller ingests with. Environment: LABCTL_DATABASE__DSN (the owner, for migrations),
GRAFANA_DB_PASSWORD, LABCTL_WRITER_PASSWORD.
"""

from __future__ import annotations

import os
import sys

from telemetry.migrate import migrate
from telemetry.roles import create_roles


def setup(dsn: str, dashboard_password: str, writer_password: str | None = None) -> list[str]:
    """Apply migrations and (re)grant both roles; returns the migrations applied now."""
    applied = [f"{m.version:04d}_{m.name}" for m in migrate(dsn)]
    create_roles(dsn, dashboard_password=dashboard_password, writer_password=writer_password)
    return applied


def main() -> int:
    applied = setup(os.environ["LABCTL_DATABASE__DSN"], os.environ["GRAFANA_DB_PASSWORD"],
                    os.environ.get("LABCTL_WRITER_PASSWORD"))
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}; roles ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
