"""Queries, exports, roles and retention against the real TimescaleDB (Apache edition here; the
licensed path's SQL is checked as text because no licensed server runs on this machine)."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg.conninfo import make_conninfo
from telemetry_factories import T0_US, make_pose_batch, score_batch

from telemetry import export, policies, queries, reference, schema
from telemetry.records import Cue, MetricBreakdown, SessionEvent, SessionRecord, SessionResult
from telemetry.roles import create_roles
from telemetry.writer import TelemetryWriter, WriterConfig

S_DONE = uuid.UUID("00000000-0000-4000-8000-000000000001")
S_LIVE = uuid.UUID("00000000-0000-4000-8000-000000000002")
S_OLD = uuid.UUID("00000000-0000-4000-8000-000000000003")
OLD_US = T0_US - 200 * 86_400 * 1_000_000  # 200 days before the others


@pytest.fixture(scope="module")
def lab(tdsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reference.upsert_site(tdsn, "site-a", "City core lab")
    reference.upsert_rig(tdsn, "site-a", "rig-01")
    reference.upsert_class(tdsn, "weld-2026a", "site-a", "Welding 2026 A")
    reference.upsert_trainee(tdsn, "T-001", "site-a", "weld-2026a", real_name="Li Lei", national_id="X1")
    reference.upsert_exercise(tdsn, "weld-t", family="welding", name="T-joint fillet")
    assert reference.add_rubric(tdsn, "weld-t", 1, "weld-t", {"pass_mark": 60})
    assert not reference.add_rubric(tdsn, "weld-t", 1, "weld-t", {"pass_mark": 60})
    with pytest.raises(reference.RubricVersionError):
        reference.add_rubric(tdsn, "weld-t", 1, "weld-t", {"pass_mark": 70})
    cfg = WriterConfig("site-a", tmp_path_factory.mktemp("spool"))
    with TelemetryWriter(tdsn, cfg) as w:
        common: dict[str, Any] = {"trainee_id": "T-001", "class_id": "weld-2026a", "exercise_id": "weld-t",
                  "rubric_id": "weld-t", "rubric_version": 1}  # fmt: skip
        w.submit(
            SessionRecord(
                S_OLD,
                "rig-01",
                "finished",
                created_us=OLD_US,
                started_us=OLD_US,
                ended_us=OLD_US + 60_000_000,
                **common,
            )
        )
        w.submit(
            SessionRecord(
                S_DONE,
                "rig-01",
                "finished",
                created_us=T0_US,
                started_us=T0_US,
                ended_us=T0_US + 60_000_000,
                gap_count=0,
                **common,
            )
        )
        w.submit(SessionRecord(S_LIVE, "rig-01", "running", started_us=T0_US, **common))
        for s in range(0, 360, 36):
            w.submit(make_pose_batch(S_DONE, s, 36))
            w.submit(make_pose_batch(S_OLD, s, 36, t0_us=OLD_US))
            w.submit(make_pose_batch(S_LIVE, s, 36, analog=0))
        w.submit(Cue(T0_US + 10, S_DONE, "rig-01", "too_high", "work_angle", 2, 57.5, "lower,\n the torch"))
        w.submit(SessionEvent(T0_US, S_DONE, "state:running", "rig-01", {"by": "instructor"}))
        w.submit(score_batch(S_DONE, 0, 8))
        w.submit(score_batch(S_LIVE, 0, 4))
        breakdown = (
            MetricBreakdown("travel_speed", 0.55, 55.0, 0.5, 0.55, 6, 4, 8),
            MetricBreakdown("work_angle", 0.81, 81.0, 0.5, 0.81, 45, 40, 50),
        )
        for sid, score, level in ((S_OLD, 48.0, None), (S_DONE, 74.0, "四级")):
            result = SessionResult(sid, "weld-t", 1, score, score >= 60, "T-001", "weld-t", level,
                                   "travel_speed", 3.0, {"work_angle": 81.0}, breakdown)  # fmt: skip
            w.submit(result)
        w.submit(SessionResult(S_DONE, "weld-t", 2, 70.0, True, "T-001", "weld-t"))  # a re-score
        assert w.flush(20)
    yield tdsn


def test_session_summary_with_breakdown(lab: str) -> None:
    s = queries.session_summary(lab, S_DONE)
    assert s is not None
    assert (s.final_score, s.passed, s.level, s.weakest_parameter) == (74.0, True, "四级", "travel_speed")
    assert [m.metric for m in s.metrics] == ["travel_speed", "work_angle"]
    assert s.metrics[0].time_in_window == pytest.approx(0.55)
    assert s.frames_stored == 360 and s.stored_ranges == [(0, 359)]
    assert s.other_results == [("weld-t", 2, 70.0)]
    assert queries.session_summary(lab, uuid.uuid4()) is None


def test_trainee_history_and_live_status(lab: str) -> None:
    h = queries.trainee_history(lab, "T-001")
    assert [r.session_id for r in h] == [S_OLD, S_DONE, S_LIVE]
    assert [r.final_score for r in h] == [48.0, 74.0, None]
    tiles = queries.live_class_status(lab, class_id="weld-2026a")
    assert [t.session_id for t in tiles] == [S_LIVE]
    t = tiles[0]
    assert t.progress == pytest.approx(0.03) and t.window_score == 80.0
    assert t.out_of_window == []  # the synthetic windows sit inside their band
    assert t.seconds_since_sample is not None and t.seconds_since_sample > 0


def test_run_sql_reports_types(lab: str) -> None:
    cols, rows = queries.run_sql(lab, "SELECT bucket, frames, r.rig_id, poses FROM pose_rate_1s r "
                                 "JOIN pose_frames USING (session_id) LIMIT 1")  # fmt: skip
    assert cols == [("bucket", "timestamptz"), ("frames", "int4"), ("rig_id", "text"), ("poses", "_float4")]
    assert len(rows) == 1
    with pytest.raises(psycopg.Error):  # read only
        queries.run_sql(lab, "DELETE FROM sessions")


def test_session_frames_read_back_exactly(lab: str) -> None:
    f = queries.session_frames(lab, S_DONE)
    assert f is not None and f.n == 360
    ref = [make_pose_batch(S_DONE, s, 36) for s in range(0, 360, 36)]
    assert np.array_equal(f.poses, np.concatenate([b.poses for b in ref]))
    assert np.array_equal(f.time_us, np.concatenate([b.time_us for b in ref]))
    assert np.array_equal(f.rig_time, np.concatenate([b.rig_time for b in ref]))
    live = queries.session_frames(lab, S_LIVE)
    assert live is not None and live.analog.shape == (360, 0)


def test_export_session_csv_and_parquet_hold_exactly_the_stored_rows(lab: str, tmp_path: Path) -> None:
    stored = queries.session_frames(lab, S_DONE)
    assert stored is not None
    files = {p.path.name: p for p in export.export_session(lab, S_DONE, tmp_path / "csv", "csv")}
    poses_csv = files[f"session-{S_DONE}-poses.csv"]
    assert poses_csv.rows == 360
    with poses_csv.path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["seq"]) for r in rows] == stored.seq.tolist()
    got = np.array([[float(r[f"t{i}_{c}"]) for i in range(6) for c in schema.POSE_COMPONENTS]
                    for r in rows], dtype=np.float32)  # fmt: skip
    assert np.array_equal(got, stored.poses.reshape(360, -1))
    assert np.array_equal(np.array([float(r["rig_time"]) for r in rows]), stored.rig_time)
    assert files[f"session-{S_DONE}-scores.csv"].rows == 8
    assert files[f"session-{S_DONE}-params.csv"].rows == 16
    assert files[f"session-{S_DONE}-cues.csv"].rows == 1
    with files[f"session-{S_DONE}-cues.csv"].path.open(newline="") as fh:
        cues = list(csv.DictReader(fh))
    assert [c["message"] for c in cues] == ["lower,\n the torch"]  # quoted, newline kept
    result = json.loads(files[f"session-{S_DONE}-result.json"].path.read_text())
    assert result["final_score"] == 74.0

    files = {p.path.name: p for p in export.export_session(lab, S_DONE, tmp_path / "pq", "parquet")}
    table = pq.read_table(files[f"session-{S_DONE}-poses.parquet"].path)
    assert table.num_rows == 360
    assert np.array_equal(table.column("seq").to_numpy(), stored.seq)
    assert np.array_equal(table.column("t3_qw").to_numpy(), stored.poses[:, 3, 6])  # qw is last
    assert np.array_equal(table.column("a1").to_numpy(), stored.analog[:, 1])
    assert np.array_equal(table.column("time").cast("int64").to_numpy(), stored.time_us)
    assert pq.read_table(files[f"session-{S_DONE}-params.parquet"].path).num_rows == 16
    with pytest.raises(export.ExportError, match="no session"):
        export.export_session(lab, uuid.uuid4(), tmp_path / "none", "csv")


def test_export_trainee_record(lab: str, tmp_path: Path) -> None:
    f = export.export_trainee(lab, "T-001", tmp_path / "t.json")
    rec = json.loads(f.path.read_text())
    assert f.rows == 3 and rec["latest_level"] == "四级"
    assert "real_name" not in rec  # pseudonymous unless asked
    assert rec["sessions"][1]["metrics"][0]["metric"] == "travel_speed"
    with_id = export.trainee_record(lab, "T-001", with_identity=True)
    assert with_id["real_name"] == "Li Lei"
    c = export.export_trainee(lab, "T-001", tmp_path / "t.csv", "csv")
    assert len(c.path.read_text().strip().splitlines()) == 4


def test_roles_dashboard_cannot_read_names(lab: str, tmp_path: Path) -> None:
    report = create_roles(lab)
    assert set(report.created) | set(report.updated) == {schema.DASHBOARD_ROLE, schema.WRITER_ROLE}
    create_roles(lab)  # idempotent
    dash = make_conninfo(lab, user=schema.DASHBOARD_ROLE)
    with psycopg.connect(dash) as conn:
        assert conn.execute("SELECT count(*) FROM trainees").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pose_samples WHERE session_id = %s",
                            (S_DONE,)).fetchone() == (360 * 6,)  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT real_name FROM trainee_identities")
    with psycopg.connect(dash) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("DELETE FROM cues")
    # the writer role can run the writer, and cannot read identities either
    wdsn = make_conninfo(lab, user=schema.WRITER_ROLE)
    sid = uuid.uuid4()
    with TelemetryWriter(wdsn, WriterConfig("site-a", tmp_path / "spool")) as w:
        w.submit(make_pose_batch(sid, 0, 12))
        w.submit(make_pose_batch(sid, 0, 12))
        assert w.flush(10)
        assert w.stats().rows_written == 12 and w.acked(sid) == 11
    with psycopg.connect(wdsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT real_name FROM trainee_identities")


def test_retention_drops_only_old_chunks(lab: str) -> None:
    policies.set_rule(lab, "pose_frames", keep=timedelta(days=180))
    assert policies.license_of(lab) == "apache"
    assert policies.apply_policies(lab) == []  # nothing to install on Apache
    dry = policies.drop_old_chunks(lab, dry_run=True)
    pose = next(d for d in dry if d.hypertable == "pose_frames")
    assert len(pose.chunks) >= 1
    with psycopg.connect(lab) as conn:
        before = conn.execute("SELECT count(*) FROM show_chunks('pose_frames')").fetchone()[0]  # type: ignore[index]
        assert conn.execute("SELECT count(*) FROM pose_frames WHERE session_id = %s",
                            (S_OLD,)).fetchone() == (360,)  # fmt: skip
    done = policies.drop_old_chunks(lab)
    assert next(d for d in done if d.hypertable == "pose_frames").chunks == pose.chunks
    with psycopg.connect(lab) as conn:
        after = conn.execute("SELECT count(*) FROM show_chunks('pose_frames')").fetchone()[0]  # type: ignore[index]
        counts: dict[uuid.UUID, int] = dict(
            conn.execute("SELECT session_id, count(*) FROM pose_frames GROUP BY 1").fetchall()
        )
    assert after == before - len(pose.chunks)
    assert S_OLD not in counts and counts[S_DONE] == 360 and counts[S_LIVE] == 360
    # sessions and results are kept: retention is for raw samples
    assert queries.session_summary(lab, S_OLD) is not None


def test_licensed_statements() -> None:
    rules = [
        policies.RetentionRule("pose_frames", timedelta(days=180), timedelta(days=1)),
        policies.RetentionRule("score_window_params", None, timedelta(days=7)),
    ]
    stmts = policies.licensed_statements(rules)
    assert stmts[0] == ("SELECT add_retention_policy('pose_frames', drop_after => interval "
                        "'15552000 seconds', if_not_exists => true)")  # fmt: skip
    assert "timescaledb.compress_segmentby = 'session_id'" in stmts[1]
    assert "compress_orderby = 'time DESC'" in stmts[1]
    assert "add_compression_policy('pose_frames', compress_after => interval '86400 seconds'" in stmts[2]
    assert not any("add_retention_policy('score_window_params'" in s for s in stmts)
    assert "compress_segmentby = 'session_id, param'" in stmts[3]
    assert "WITH (timescaledb.continuous)" in stmts[-2] and "DROP VIEW pose_rate_1m" in stmts[-2]
    assert stmts[-1].startswith("SELECT add_continuous_aggregate_policy('pose_rate_1m'")


def test_licensed_rollup_query_matches_the_apache_view(lab: str) -> None:
    """The continuous aggregate's SELECT (minus WITH NO DATA) returns what the view returns."""
    select = policies.POSE_RATE_1M_CAGG.split(" AS\n", 1)[1].rsplit("WITH NO DATA", 1)[0]
    with psycopg.connect(lab) as conn:
        a = conn.execute(f"SELECT * FROM ({select}) q ORDER BY 1, 2".encode()).fetchall()
        b = conn.execute("SELECT * FROM pose_rate_1m ORDER BY 1, 2").fetchall()
    assert a == b and len(a) > 0


def test_parquet_without_pyarrow_says_what_to_install(
    lab: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow is installed here, so its absence is simulated (sys.modules entry None makes the
    import fail exactly as when the package is missing)."""
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(export.ExportError, match=r"pip install 'vr-lab-controller\[parquet\]'"):
        export.export_session(lab, S_DONE, tmp_path, "parquet")
    assert not any(tmp_path.iterdir())  # nothing half-written
