"""Schema migrations: the ``.sql`` files in ``telemetry/migrations`` applied in name order.

Each file runs in its own transaction and is recorded in ``schema_migrations`` with a SHA-256 of
its text; an applied file whose text changed afterwards is an error (write a new migration
instead). A transaction-level advisory lock keeps two migrators from racing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psycopg

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x7E1E_0005
"""Advisory lock id for migrations (arbitrary constant; 'tele' + issue 5)."""

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """A migration could not be applied, or an applied one was edited afterwards."""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    """A migration and whether/when it was applied."""

    version: int
    name: str
    applied_at: datetime | None
    checksum_ok: bool


def available() -> list[Migration]:
    """The migrations shipped with the package, in order."""
    out: list[Migration] = []
    for entry in resources.files("telemetry.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return out


def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, tuple[str, datetime]]:
    conn.execute(_BOOKKEEPING)
    rows = conn.execute("SELECT version, checksum, applied_at FROM schema_migrations").fetchall()
    return {int(str(v)): (str(c), a) for v, c, a in rows if isinstance(a, datetime)}


def status(dsn: str) -> list[MigrationStatus]:
    """Every shipped migration with its applied time (None if pending)."""
    with psycopg.connect(dsn) as conn:
        applied = _applied(conn)
        conn.rollback()
    out = []
    for m in available():
        got = applied.get(m.version)
        out.append(
            MigrationStatus(
                m.version,
                m.name,
                got[1] if got else None,
                got is None or got[0] == m.checksum,
            )
        )
    return out


def _ensure_timescaledb(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create the extension if it is missing (it is ``trusted``; else a superuser must)."""
    have = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if have:
        return
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION timescaledb")
    except psycopg.Error as exc:
        raise MigrationError(
            "the database has no timescaledb extension and it could not be created "
            f"({str(exc).strip().splitlines()[0]}); run CREATE EXTENSION timescaledb as a "
            "superuser, and check shared_preload_libraries = 'timescaledb'"
        ) from exc


def migrate(dsn: str) -> list[Migration]:
    """Apply every pending migration in order; return those applied now."""
    done: list[Migration] = []
    with psycopg.connect(dsn) as conn:
        _ensure_timescaledb(conn)
        for m in available():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                applied = _applied(conn)
                if m.version in applied:
                    if applied[m.version][0] != m.checksum:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} was changed after it was "
                            "applied; add a new migration instead"
                        )
                    continue
                try:
                    conn.execute(m.sql.encode())
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {m.version:04d}_{m.name}: {exc}") from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
                done.append(m)
    return done
