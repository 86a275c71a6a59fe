"""One-shot database set-up for deploy/: migrate, then (re)create the read-only Grafana role.

Idempotent (safe on every `docker compose up`). The role may read every table and view except
the identity tables (real names), is read-only by default and has a statement timeout, so a
heavy dashboard cannot hold the ingest path up. Environment: LABCTL_DATABASE__DSN (owner),
GRAFANA_DB_USER (default grafana_reader), GRAFANA_DB_PASSWORD.
"""

from __future__ import annotations

import os
import sys

import psycopg
from psycopg import sql

from telemetry.migrate import migrate
from telemetry.schema import IDENTITY_TABLES

STATEMENT_TIMEOUT = "30s"
"""Longer than any panel should take on a lab-sized database; a runaway query is cut off."""


def setup(dsn: str, password: str, role: str = "grafana_reader") -> list[str]:
    """Apply migrations and grant `role` read access; returns the migrations applied now."""
    applied = [f"{m.version:04d}_{m.name}" for m in migrate(dsn)]
    ident = sql.Identifier(role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
            ident, sql.Literal(password)))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident))
        conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
            ident, sql.Literal(STATEMENT_TIMEOUT)))
        dbname = conn.info.dbname
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(dbname), ident))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ident))
        for table in IDENTITY_TABLES:
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(
                sql.Identifier(table.TABLE), ident))
    return applied


def main() -> int:
    dsn = os.environ["LABCTL_DATABASE__DSN"]
    password = os.environ["GRAFANA_DB_PASSWORD"]
    role = os.environ.get("GRAFANA_DB_USER", "grafana_reader")
    applied = setup(dsn, password, role)
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}; role {role} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
