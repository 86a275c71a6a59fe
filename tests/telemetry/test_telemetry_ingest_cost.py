"""Issue 8's cheaper ingest (migration 0005, range writes by difference) keeps every behaviour:
indexes still serve the queries, an upgraded database gets the same definitions, and
``ingest_ranges`` holds exactly the stored intervals after holes are filled and merged."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from telemetry_factories import T0_US

from telemetry import migrate as migrate_mod
from telemetry.cluster import ManagedCluster
from telemetry.migrate import Migration, migrate
from telemetry.ranges import RangeSet
from telemetry.records import PoseBatch
from telemetry.store import us_to_datetime
from telemetry.writer import TelemetryWriter, WriterConfig

PB = Callable[..., PoseBatch]


def _index_defs(conn: psycopg.Connection[tuple[object, ...]], like: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_class c WHERE c.relkind = 'i' "
        "AND c.relname LIKE %s",
        (like,),
    ).fetchall()
    return {str(n): str(d) for n, d in rows}


def _reloptions(conn: psycopg.Connection[tuple[object, ...]], name: str) -> list[str]:
    row = conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s", (name,)).fetchone()
    assert row is not None, name
    return [str(x) for x in row[0] or []]  # type: ignore[attr-defined]


def _plan(conn: psycopg.Connection[tuple[object, ...]], sql: str, *params: object) -> str:
    conn.execute("SET enable_seqscan = off")  # which index serves it, not the cheapest plan
    rows = conn.execute(f"EXPLAIN {sql}".encode(), params).fetchall()
    conn.execute("RESET enable_seqscan")
    return "\n".join(str(r[0]) for r in rows)


def _check_0005(dsn: str) -> None:
    """Every chunk's time index ascending without deduplication, HOT room on the updated
    tables, and the time and session queries still index scans."""
    with psycopg.connect(dsn) as conn:
        for table, key in (("pose_frames", '("time")'), ("score_windows", '("time")'),
                           ("score_window_params", '("time")'), ("pose_rate_1s", "(bucket)")):  # fmt: skip
            defs = _index_defs(conn, f"%{table}_{'bucket' if table == 'pose_rate_1s' else 'time'}_idx")
            assert len(defs) >= 2, defs  # the hypertable's index and at least one chunk's
            for name, d in defs.items():
                assert d.endswith(key) or key + " WITH" in d, (name, d)
        for name, d in {**_index_defs(conn, "%pose_frames_time_idx"),
                        **_index_defs(conn, "%pose_frames_session_idx")}.items():  # fmt: skip
            assert "deduplicate_items='off'" in d or "deduplicate_items=off" in d, (name, d)
        assert "fillfactor=50" in _reloptions(conn, "pose_rate_1s")
        assert "fillfactor=50" in _reloptions(conn, "ingest_ranges")
        latest = _plan(conn, "SELECT time, seq FROM pose_frames ORDER BY time DESC LIMIT 10")
        assert "Index Scan Backward using" in latest and "pose_frames_time_idx" in latest, latest
        sid = uuid.uuid4()
        by_session = _plan(conn, "SELECT seq FROM pose_frames WHERE session_id = %s", sid)
        assert "pose_frames_session_idx" in by_session, by_session
        window = _plan(
            conn,
            "SELECT count(*) FROM pose_frames WHERE time >= %s", us_to_datetime(T0_US),
        )
        assert "pose_frames_time_idx" in window, window


def _some_frames(dsn: str, tmp_path: Path, pose_batch: PB) -> list[uuid.UUID]:
    sids = [uuid.uuid4() for _ in range(3)]
    w = TelemetryWriter(dsn, WriterConfig("site-a", tmp_path / "spool"))
    with w:
        for sid in sids:
            w.submit(pose_batch(sid, 0, 30))
        assert w.flush(10)
    return sids


def _score_chunks(dsn: str) -> None:
    """A score window and a parameter row, so those hypertables have a chunk (and its indexes)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO score_windows VALUES (now(), 's', gen_random_uuid(), 'r', 0, 0, 0, 0, 0)"
        )
        conn.execute(
            "INSERT INTO score_window_params VALUES (now(), gen_random_uuid(), 0, 'p', 0, 0, 0, 0, 0, 0)"
        )


def test_fresh_database_has_the_0005_indexes(tdsn: str, tmp_path: Path, pose_batch: PB) -> None:
    _some_frames(tdsn, tmp_path, pose_batch)  # chunks, so chunk indexes exist
    _score_chunks(tdsn)
    _check_0005(tdsn)


def test_0005_upgrades_a_database_with_data(
    pg_cluster: ManagedCluster, tmp_path: Path, pose_batch: PB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrations up to 0004 and frames stored the old way, then 0005: existing chunks get the
    new definitions, the frames and their ranges are unchanged, and writing goes on."""
    dsn = pg_cluster.create_database("t_ingest_cost_upgrade", exist_ok=False)
    everything = migrate_mod.available()
    before: list[Migration] = [m for m in everything if m.version < 5]
    monkeypatch.setattr(migrate_mod, "available", lambda: before)
    migrate(dsn)
    sids = _some_frames(dsn, tmp_path / "old", pose_batch)
    _score_chunks(dsn)
    monkeypatch.setattr(migrate_mod, "available", lambda: everything)
    assert [m.version for m in migrate(dsn)] == [m.version for m in everything if m.version >= 5]
    _check_0005(dsn)
    w = TelemetryWriter(dsn, WriterConfig("site-a", tmp_path / "new" / "spool"))
    with w:
        for sid in sids:
            w.submit(pose_batch(sid, 0, 40))  # 0..29 stored before the migration
        assert w.flush(10)
        assert w.stats().rows_written == 10 * len(sids)
    with psycopg.connect(dsn) as conn:
        for sid in sids:
            assert conn.execute(
                "SELECT count(*), count(DISTINCT seq) FROM pose_frames WHERE session_id = %s", (sid,)
            ).fetchone() == (40, 40)
            assert conn.execute(
                "SELECT seq_lo, seq_hi FROM ingest_ranges WHERE session_id = %s", (sid,)
            ).fetchall() == [(0, 39)]


def _stored_ranges(dsn: str, sid: uuid.UUID) -> list[tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT seq_lo, seq_hi FROM ingest_ranges WHERE stream = 'pose' AND session_id = %s "
            "ORDER BY seq_lo",
            (sid,),
        ).fetchall()
    return [(int(a), int(b)) for a, b in rows]


def test_ranges_written_by_difference_match_the_stored_frames(
    tdsn: str, tmp_path: Path, pose_batch: PB
) -> None:
    """Intervals that grow, appear, and merge (their rows deleted) in separate transactions and
    within one: after each commit ``ingest_ranges`` is exactly the writer's RangeSet and the
    frames stored; a fresh writer reloads it and stores nothing twice."""
    sid = uuid.uuid4()
    steps: list[list[tuple[int, int]]] = [
        [(10, 10)],  # first interval does not start at 0
        [(20, 10), (40, 5)],  # two new intervals
        [(30, 10)],  # fills the hole between [20, 29] and [40, 44]: one interval, a row deleted
        [(0, 5), (45, 5)],  # a new one before everything, and growth of the last
        [(5, 5), (60, 3), (70, 2)],  # merges [0, 4] and [10, 49]; two new after
        [(63, 7), (50, 10)],  # closes every hole in one transaction
    ]
    expected = RangeSet()
    w = TelemetryWriter(tdsn, WriterConfig("site-a", tmp_path / "spool", max_batch_ms=1.0))
    with w:
        for step in steps:
            for seq0, n in step:
                w.submit(pose_batch(sid, seq0, n))
                expected.add(seq0, seq0 + n - 1)
            assert w.flush(10)
            assert _stored_ranges(tdsn, sid) == expected.intervals
            assert w.durable_ranges(sid) == expected
    assert expected.intervals == [(0, 71)]
    w2 = TelemetryWriter(tdsn, WriterConfig("site-a", tmp_path / "second"))
    with w2:
        w2.submit(pose_batch(sid, 0, 75))
        assert w2.flush(10)
        assert w2.stats().rows_written == 3
    assert _stored_ranges(tdsn, sid) == [(0, 74)]
    with psycopg.connect(tdsn) as conn:
        assert conn.execute(
            "SELECT count(*), count(DISTINCT seq), sum(1) FILTER (WHERE seq > 74) FROM pose_frames "
            "WHERE session_id = %s",
            (sid,),
        ).fetchone() == (75, 75, None)
        assert conn.execute(
            "SELECT sum(frames) FROM pose_rate_1s WHERE session_id = %s", (sid,)
        ).fetchone() == (75,)
