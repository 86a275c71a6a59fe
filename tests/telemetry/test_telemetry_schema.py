"""Migrations and the schema names the dashboards import, against the real TimescaleDB."""

from __future__ import annotations

import psycopg
import pytest

from telemetry import schema
from telemetry.cluster import ManagedCluster
from telemetry.migrate import MigrationError, available, migrate, status


def test_migrations_apply_once_and_are_recorded(tdsn: str) -> None:
    assert migrate(tdsn) == []  # the fixture applied them; a second run applies nothing
    st = status(tdsn)
    assert [s.version for s in st] == [m.version for m in available()]
    assert all(s.applied_at is not None and s.checksum_ok for s in st)


def test_every_schema_name_exists_and_none_is_missing(tdsn: str) -> None:
    with psycopg.connect(tdsn) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
    db: dict[str, list[str]] = {}
    for table, column in rows:
        db.setdefault(table, []).append(column)
    for t in schema.ALL:
        assert t.TABLE in db, f"{t.TABLE} missing from the database"
        assert list(t.columns()) == db[t.TABLE], f"{t.TABLE}: schema.py and migrations differ"
    assert set(db) == {t.TABLE for t in schema.ALL}


def test_hypertables_and_pose_chunk_interval(tdsn: str) -> None:
    with psycopg.connect(tdsn) as conn:
        hts = {
            r[0]
            for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            ).fetchall()
        }
        interval = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'pose_frames'"
        ).fetchone()
    assert hts == {t.TABLE for t in schema.HYPERTABLES}
    assert interval is not None and interval[0].total_seconds() == 1800


def test_edited_migration_is_refused(tdsn: str) -> None:
    with psycopg.connect(tdsn, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    try:
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(tdsn)
        assert not status(tdsn)[0].checksum_ok
    finally:
        with psycopg.connect(tdsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE schema_migrations SET checksum = %s WHERE version = 1",
                (available()[0].checksum,),
            )


def test_migrate_creates_the_extension_when_missing(pg_cluster: ManagedCluster) -> None:
    dsn = pg_cluster.create_database("t_telemetry_noext", extensions=())
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None
    assert [m.version for m in migrate(dsn)] == [m.version for m in available()]
