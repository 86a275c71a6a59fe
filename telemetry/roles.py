"""Database roles: a writer role for ingest and a read-only dashboard role (no real names).

Run again after new migrations (``labctl db roles``): grants are per table, so a table added
later is invisible to the dashboard role until then, which is the safe default.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from telemetry import schema

_WRITER_WRITE = ("ingest_ranges", "result_metrics")
"""Tables the writer also deletes from (range bookkeeping, a result's breakdown)."""


@dataclass(frozen=True)
class RoleReport:
    """What :func:`create_roles` did."""

    created: tuple[str, ...]
    updated: tuple[str, ...]


def _ensure_role(conn: psycopg.Connection[tuple[object, ...]], name: str, password: str | None) -> bool:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    ident = sql.Identifier(name)
    if not exists:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
    if password is not None:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
    return not exists


def create_roles(
    dsn: str,
    *,
    dashboard_password: str | None = None,
    writer_password: str | None = None,
    dashboard_role: str = schema.DASHBOARD_ROLE,
    writer_role: str = schema.WRITER_ROLE,
) -> RoleReport:
    """Create (or update) both roles and (re)grant their privileges on the migrated schema."""
    created: list[str] = []
    updated: list[str] = []
    readable = [t.TABLE for t in schema.ALL if t not in schema.IDENTITY_TABLES]
    writable = [
        t.TABLE
        for t in schema.ALL
        if t not in schema.IDENTITY_TABLES and t not in schema.VIEWS
        and t.TABLE != "schema_migrations"
    ]  # fmt: skip
    with psycopg.connect(dsn) as conn:
        dbname = conn.info.dbname
        for role, pw in ((dashboard_role, dashboard_password), (writer_role, writer_password)):
            (created if _ensure_role(conn, role, pw) else updated).append(role)
        dash = sql.Identifier(dashboard_role)
        wr = sql.Identifier(writer_role)
        for ident in (dash, wr):
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), ident))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
            # start from nothing, then grant exactly what each role needs
            conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(ident))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(dash))
        conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = '30s'").format(dash))
        for table in readable:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), dash))
        for table in writable:
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(sql.Identifier(table), wr)
            )
        # bigserial ids (issue 9's referee marks, appeals, audit)
        conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(wr))
        for table in _WRITER_WRITE:
            conn.execute(sql.SQL("GRANT DELETE ON {} TO {}").format(sql.Identifier(table), wr))
        conn.commit()
    return RoleReport(tuple(created), tuple(updated))
