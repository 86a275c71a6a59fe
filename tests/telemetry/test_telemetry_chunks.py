"""PoseChunk (the controller's cheap hand-over) against the real TimescaleDB: the stored rows are
exactly those of the PoseBatch path, resends are stored once, acks, spool and replay. Score
windows by binary COPY: exactly the rows of the former per-row text COPY."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from telemetry.records import PoseBatch, PoseChunk, ScoreWindowBatch, decode, kind_of
from telemetry.store import us_to_datetime
from telemetry.writer import TelemetryWriter, WriterConfig, WriterState

RIG_T0 = 1_793_520_000.123456789  # rig clock near the dashboards' test range, odd fractions
PERIOD = 1 / 120


def _chunk(
    sid: uuid.UUID,
    seq0: int,
    n: int,
    *,
    rig_id: str = "rig-01",
    trackers: int = 6,
    analog: int = 2,
    offset_s: float = 0.0123456,
    lost: bool = False,
    readonly: bool = True,
) -> PoseChunk:
    """Deterministic frames (values depend only on session and seq, so a resend is identical),
    poses/analog as read-only views of one float32 buffer, like a received wire chunk."""
    rng = np.random.default_rng([sid.int & 0xFFFFFFFF, seq0, n, trackers])
    buf = rng.standard_normal(n * (trackers * 7 + analog)).astype("<f4")
    if readonly:
        buf = np.frombuffer(buf.tobytes(), dtype="<f4")  # read-only, like a zmq frame
    poses = buf[: n * trackers * 7].reshape(n, trackers, 7)
    an = buf[n * trackers * 7 :].reshape(n, analog)
    valid = None
    if lost:
        valid = rng.random((n, trackers)) > 0.3
    t0 = RIG_T0 + seq0 * PERIOD
    return PoseChunk(sid, rig_id, seq0, n, t0, PERIOD, offset_s, poses, an, valid)


def _pipeline_batch(c: PoseChunk) -> PoseBatch:
    """The PoseBatch the controller's TelemetrySink builds today for the same wire chunk
    (lab_controller/pipeline.py, restated here because telemetry must not import it)."""
    rig_times = np.asarray(c.rig_t0 + np.arange(c.n, dtype=np.float64) * c.period, np.float64)
    t = c.poses.shape[1]
    if c.valid is None:
        # (pipeline.py writes (1 << t) - 1, which overflows int32 at 32 trackers; -1 is that
        # mask's int32 value, as PoseBatch.from_chunk has it)
        mask = np.full(c.n, (1 << t) - 1 if t < 32 else -1, np.int32)
    else:
        bits = (np.uint32(1) << np.arange(t, dtype=np.uint32)).astype(np.int64)
        mask = (c.valid.astype(np.int64) * bits).sum(axis=1).astype(np.int32)
    return PoseBatch(
        session_id=c.session_id,
        rig_id=c.rig_id,
        seq0=c.seq0,
        time_us=np.rint((rig_times - c.offset_s) * 1e6).astype(np.int64),
        rig_time=rig_times,
        poses=c.poses,
        analog=c.analog,
        valid_mask=mask,
    )


def _renamed(b: PoseBatch, sid: uuid.UUID) -> PoseBatch:
    return PoseBatch(sid, b.rig_id, b.seq0, b.time_us, b.rig_time, b.poses, b.analog, b.valid_mask)


def _rows(dsn: str, sid: uuid.UUID) -> list[tuple[Any, ...]]:
    """Every stored column of a session (text of the exact binary values: no float rounding)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT seq, time, float8send(rig_time), rig_id, poses::text, analog::text, valid_mask "
            "FROM pose_frames WHERE session_id = %s ORDER BY seq",
            (sid,),
        ).fetchall()


def _rollup(dsn: str, sid: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT bucket, rig_id, frames, valid_frames, last_seq, last_time FROM pose_rate_1s "
            "WHERE session_id = %s ORDER BY bucket",
            (sid,),
        ).fetchall()


def _ranges(dsn: str, sid: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT seq_lo, seq_hi FROM ingest_ranges WHERE stream = 'pose' AND session_id = %s "
            "ORDER BY seq_lo",
            (sid,),
        ).fetchall()


def _writer(dsn: str, spool: Path, **kw: Any) -> TelemetryWriter:
    return TelemetryWriter(dsn, WriterConfig("site-a", spool, **kw))


def _stream(sid: uuid.UUID, frames: int, **kw: Any) -> list[PoseChunk]:
    """A session's frames as 2- and 3-frame chunks (20 ms at 120 Hz), some with lost trackers."""
    out: list[PoseChunk] = []
    s = 0
    while s < frames:
        n = min(3 if (s // 5) % 2 else 2, frames - s)
        out.append(_chunk(sid, s, n, lost=(s % 7 == 0), **kw))
        s += n
    return out


def test_stored_rows_equal_the_pose_batch_path(tdsn: str, tmp_path: Path) -> None:
    # Several sessions interleaved, three row shapes (rig id length, trackers, analog channels),
    # clock offsets of both signs, lost trackers in some chunks: the chunk path and today's
    # PoseBatch path store identical rows, rollups and ranges.
    shapes = [
        {"rig_id": "rig-01", "trackers": 6, "analog": 2, "offset_s": 0.0123456},
        {"rig_id": "hall-b-rig-117", "trackers": 6, "analog": 2, "offset_s": -2.5e-4},
        {"rig_id": "rig-02", "trackers": 3, "analog": 0, "offset_s": 3.75},
        {"rig_id": "rig-03", "trackers": 32, "analog": 1, "offset_s": 0.0},
    ]
    chunk_sids = [uuid.uuid4() for _ in shapes]
    batch_sids = [uuid.uuid4() for _ in shapes]
    streams = [_stream(sid, 250, **kw) for sid, kw in zip(chunk_sids, shapes, strict=True)]
    interleaved = [c for group in zip(*streams, strict=False) for c in group]
    w = _writer(tdsn, tmp_path / "chunks", max_batch_rows=300)  # several transactions
    with w:
        for c in interleaved:
            w.submit(c)
        assert w.flush(20)
        assert w.stats().rows_written == 4 * 250
    b = _writer(tdsn, tmp_path / "batches")
    with b:
        for c in interleaved:
            b.submit(_renamed(_pipeline_batch(c), batch_sids[chunk_sids.index(c.session_id)]))
        assert b.flush(20)
    for cs, bs in zip(chunk_sids, batch_sids, strict=True):
        assert w.acked(cs) == 249
        got, want = _rows(tdsn, cs), _rows(tdsn, bs)
        assert len(got) == 250
        assert got == want
        assert _rollup(tdsn, cs) == _rollup(tdsn, bs)
        assert _ranges(tdsn, cs) == _ranges(tdsn, bs) == [(0, 249)]
    # and to_pose_batch() is that same reference, value for value
    for c in interleaved[:20]:
        ref, mine = _pipeline_batch(c), c.to_pose_batch()
        for name in ("time_us", "rig_time", "poses", "analog", "valid_mask"):
            assert np.array_equal(getattr(ref, name), getattr(mine, name)), name


def test_resent_chunks_are_stored_once(tdsn: str, tmp_path: Path) -> None:
    sid = uuid.uuid4()
    chunks = _stream(sid, 60)
    w = _writer(tdsn, tmp_path / "spool")
    with w:
        for c in chunks:
            w.submit(c)
        for c in chunks[:10]:  # resent in a later transaction
            w.submit(c)
        w.submit(_chunk(sid, 58, 4))  # 58, 59 stored; 60, 61 new
        w.submit(_chunk(sid, 62, 3))
        w.submit(_chunk(sid, 62, 3))  # a duplicate inside one transaction
        w.submit(_pipeline_batch(_chunk(sid, 64, 3)))  # 64 stored (PoseBatch mixed in), 65, 66 new
        assert w.flush(10)
        st = w.stats()
    assert st.rows_written == 67
    assert st.rows_deduplicated == sum(c.n for c in chunks[:10]) + 2 + 3 + 1
    assert w.acked(sid) == 66
    rows = _rows(tdsn, sid)
    assert [r[0] for r in rows] == list(range(67))
    assert _ranges(tdsn, sid) == [(0, 66)]
    with psycopg.connect(tdsn) as conn:
        assert conn.execute(
            "SELECT sum(frames) FROM pose_rate_1s WHERE session_id = %s", (sid,)
        ).fetchone() == (67,)
    # the partially resent chunk stored exactly its new frames, with the chunk's own values
    ref = _pipeline_batch(_chunk(sid, 58, 4))
    with psycopg.connect(tdsn) as conn:
        got = conn.execute(
            "SELECT seq, poses, time FROM pose_frames WHERE session_id = %s AND seq IN (60, 61) "
            "ORDER BY seq",
            (sid,),
        ).fetchall()
    for (seq, poses, t), i in zip(got, (2, 3), strict=True):
        assert seq == 58 + i
        assert np.array_equal(np.array(poses, np.float32), ref.poses[i])
        assert round(t.timestamp() * 1e6) == ref.time_us[i]


def test_acks_are_contiguous_with_holes(tdsn: str, tmp_path: Path) -> None:
    sid = uuid.uuid4()
    w = _writer(tdsn, tmp_path / "spool")
    with w:
        w.submit(_chunk(sid, 0, 3))
        w.submit(_chunk(sid, 6, 3))
        assert w.flush(10)
        assert w.acked(sid) == 2
        assert w.durable_ranges(sid).intervals == [(0, 2), (6, 8)]
        w.submit(_chunk(sid, 3, 3))
        assert w.flush(10)
        assert w.acked(sid) == 8


def test_spool_form_round_trips() -> None:
    sid = uuid.uuid4()
    for c in (_chunk(sid, 5, 3), _chunk(sid, 9, 2, lost=True, rig_id="rig-ü", analog=0)):
        back = decode(int(kind_of(c)), c.to_bytes())
        assert isinstance(back, PoseChunk)
        assert (back.session_id, back.rig_id, back.seq0, back.n) == (sid, c.rig_id, c.seq0, c.n)
        assert (back.rig_t0, back.period, back.offset_s) == (c.rig_t0, c.period, c.offset_s)
        assert np.array_equal(back.poses, c.poses) and np.array_equal(back.analog, c.analog)
        assert (back.valid is None) == (c.valid is None)
        if c.valid is not None:
            assert back.valid is not None and np.array_equal(back.valid, c.valid)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spooled_chunks_are_acked_and_replayed(tdsn: str, tmp_path: Path) -> None:
    # The database is unreachable (nothing listens on the port): chunks go to the spool, are
    # acknowledged after its fsync; a restarted writer drains them into the database with the
    # same rows as the PoseBatch path, once, even when the rig resends some meanwhile.
    sid, ref_sid = uuid.uuid4(), uuid.uuid4()
    chunks = _stream(sid, 120)
    down = f"host=127.0.0.1 port={_closed_port()} dbname=x user=x connect_timeout=1"
    first = _writer(down, tmp_path / "spool", retry_interval_s=0.1, max_batch_ms=5)
    with first:
        for c in chunks:
            first.submit(c)
        assert first.flush(20)
        assert first.state in (WriterState.SPOOLING, WriterState.STALLED)
        assert first.acked(sid) == 119  # durable in the spool
        assert first.stats().spooled_records >= len(chunks)  # + the writer's own metrics
    second = _writer(tdsn, tmp_path / "spool", retry_interval_s=0.1)
    assert second.durable_ranges(sid).intervals == [(0, 119)]  # recovered from the spool
    with second:
        for c in chunks[-5:]:  # resent by the rig while the spool drains
            second.submit(c)
        assert second.wait_drained(30), second.stats()
        assert second.acked(sid) == 119
    ref = _writer(tdsn, tmp_path / "ref")
    with ref:
        for c in chunks:
            ref.submit(_renamed(_pipeline_batch(c), ref_sid))
        assert ref.flush(10)
    assert _rows(tdsn, sid) == _rows(tdsn, ref_sid)
    assert _rollup(tdsn, sid) == _rollup(tdsn, ref_sid)


def test_malformed_chunk_is_rejected_not_fatal(tdsn: str, tmp_path: Path) -> None:
    sid, bad_sid = uuid.uuid4(), uuid.uuid4()
    good = _chunk(sid, 0, 3)
    bad = _chunk(bad_sid, 0, 3)
    bad = PoseChunk(bad_sid, "rig-01", 0, 3, bad.rig_t0, PERIOD, 0.0, bad.poses[:2], bad.analog)
    w = _writer(tdsn, tmp_path / "spool")
    with w:
        w.submit(good)
        w.submit(bad)  # n says 3, poses hold 2 frames
        w.submit(_chunk(sid, 3, 3))
        assert w.flush(10)
        st = w.stats()
    assert st.rejected_records == 1 and st.rows_written == 6
    assert w.acked(sid) == 5 and w.acked(bad_sid) == -1
    with psycopg.connect(tdsn) as conn:
        kinds = conn.execute(
            "SELECT kind FROM ingest_rejects WHERE error LIKE 'ValueError%%'"
        ).fetchall()
    assert kinds == [(int(kind_of(bad)),)]


def test_empty_chunk_stores_nothing(tdsn: str, tmp_path: Path) -> None:
    sid = uuid.uuid4()
    w = _writer(tdsn, tmp_path / "spool")
    with w:
        w.submit(_chunk(sid, 0, 0))
        assert w.flush(10)
        assert w.stats().rows_written == 0
    assert w.acked(sid) == -1


def _score(
    sid: uuid.UUID, widx: list[int], params: tuple[str, ...], rig_id: str = "rig-01", seed: int = 0
) -> ScoreWindowBatch:
    rng = np.random.default_rng([sid.int & 0xFFFF, seed])
    n, p = len(widx), len(params)
    idx = np.array(widx, np.int32)
    mean = rng.standard_normal((n, p)).astype(np.float32)
    if p:
        mean[0, 0] = np.nan  # a parameter the window had no data for
    return ScoreWindowBatch(
        session_id=sid,
        rig_id=rig_id,
        window_idx=idx,
        time_us=1_793_520_000_000_000 + idx.astype(np.int64) * 250_000 + 7,
        seq_hi=idx.astype(np.int64) * 30 + 29,
        progress=rng.random(n, dtype=np.float32),
        alignment_distance=rng.random(n, dtype=np.float32) * 100,
        window_score=rng.random(n, dtype=np.float32) * 100,
        params=params,
        mean=mean,
        std=rng.random((n, p), dtype=np.float32),
        frac_in_window=rng.random((n, p), dtype=np.float32),
        ideal=rng.standard_normal(p).astype(np.float32),
        lo=rng.standard_normal(p).astype(np.float32) - 5,
        hi=rng.standard_normal(p).astype(np.float32) + 5,
    )


def _text_copy_reference(conn: psycopg.Connection[Any], b: ScoreWindowBatch, site: str) -> None:
    """What the writer stored before its binary COPY (per-row text COPY), restated."""
    with conn.cursor() as cur, cur.copy(
        "COPY score_windows (time, site_id, session_id, rig_id, window_idx, seq_hi, progress, "
        "alignment_distance, window_score) FROM STDIN"
    ) as copy:
        for i in range(b.n):
            copy.write_row((
                us_to_datetime(int(b.time_us[i])), site, b.session_id, b.rig_id,
                int(b.window_idx[i]), int(b.seq_hi[i]), float(b.progress[i]),
                float(b.alignment_distance[i]), float(b.window_score[i]),
            ))  # fmt: skip
    with conn.cursor() as cur, cur.copy(
        "COPY score_window_params (time, session_id, window_idx, param, mean, std, "
        "frac_in_window, ideal, lo, hi) FROM STDIN"
    ) as copy:
        for i in range(b.n):
            for j, p in enumerate(b.params):
                copy.write_row((
                    us_to_datetime(int(b.time_us[i])), b.session_id, int(b.window_idx[i]), p,
                    float(b.mean[i, j]), float(b.std[i, j]), float(b.frac_in_window[i, j]),
                    float(b.ideal[j]), float(b.lo[j]), float(b.hi[j]),
                ))  # fmt: skip


def _score_rows(dsn: str, sid: uuid.UUID) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        w = conn.execute(
            "SELECT time, site_id, rig_id, window_idx, seq_hi, float4send(progress), "
            "float4send(alignment_distance), float4send(window_score) FROM score_windows "
            "WHERE session_id = %s ORDER BY window_idx",
            (sid,),
        ).fetchall()
        p = conn.execute(
            "SELECT time, window_idx, param, float4send(mean), float4send(std), "
            "float4send(frac_in_window), float4send(ideal), float4send(lo), float4send(hi) "
            "FROM score_window_params WHERE session_id = %s ORDER BY window_idx, param",
            (sid,),
        ).fetchall()
    return w, p


def test_score_rows_equal_the_text_copy(tdsn: str, tmp_path: Path) -> None:
    # Windows one by one (the controller's case) and in runs, resent and repeated inside a
    # batch, rig ids of several byte lengths (one not ASCII), two parameter sets, NaN means.
    welding = ("work_angle", "travel_angle", "ctwd", "travel_speed", "aim")
    painting = ("distance", "angle", "speed", "overlap")
    sessions = [
        (uuid.uuid4(), "rig-01", welding),
        (uuid.uuid4(), "hall-b-rig-117", welding),
        (uuid.uuid4(), "stand-ü", painting),
        (uuid.uuid4(), "rig-02", ()),
    ]
    submitted: list[ScoreWindowBatch] = []
    for k in range(6):
        for sid, rig, params in sessions:
            submitted.append(_score(sid, [k], params, rig, seed=k))
    for sid, rig, params in sessions:
        submitted.append(_score(sid, [6, 7, 8], params, rig, seed=6))
        submitted.append(_score(sid, [2, 3], params, rig, seed=2))  # resent: stored already
        submitted.append(_score(sid, [9, 9, 10], params, rig, seed=9))  # 9 repeated: once
    w = _writer(tdsn, tmp_path / "spool", max_batch_rows=5)  # several transactions
    with w:
        for b in submitted:
            w.submit(b)
        assert w.flush(20)
        assert w.stats().score_windows_written == 4 * 11
    # the reference: what was stored first for each window, through the old text COPY
    with psycopg.connect(tdsn) as conn:
        for sid, _rig, _params in sessions:
            ref_sid = uuid.UUID(int=sid.int ^ 1)
            seen: set[int] = set()
            for b in submitted:
                if b.session_id != sid:
                    continue
                keep = np.zeros(b.n, bool)
                for i, x in enumerate(b.window_idx.tolist()):
                    if x not in seen:
                        keep[i] = True
                        seen.add(x)
                if keep.any():
                    t = b.take(keep)
                    _text_copy_reference(conn, ScoreWindowBatch(
                        ref_sid, t.rig_id, t.window_idx, t.time_us, t.seq_hi, t.progress,
                        t.alignment_distance, t.window_score, t.params, t.mean, t.std,
                        t.frac_in_window, t.ideal, t.lo, t.hi,
                    ), "site-a")  # fmt: skip
        conn.commit()
    for sid, _rig, params in sessions:
        got_w, got_p = _score_rows(tdsn, sid)
        ref_w, ref_p = _score_rows(tdsn, uuid.UUID(int=sid.int ^ 1))
        assert [r[3] for r in got_w] == list(range(11))
        assert len(got_p) == 11 * len(params)
        assert got_w == ref_w
        assert got_p == ref_p
        assert w.durable_ranges(sid, "score").intervals == [(0, 10)]


def test_rig_ids_needing_quotes_round_trip(tdsn: str, tmp_path: Path) -> None:
    # the bookkeeping sends array literals: quotes, backslashes, commas, braces, NULL-like text
    rigs = ['a"b', "c\\d", "e,f", "{g}", "NULL", "h i", "ü"]
    sids = [uuid.uuid4() for _ in rigs]
    w = _writer(tdsn, tmp_path / "spool")
    with w:
        for sid, rig in zip(sids, rigs, strict=True):
            w.submit(_chunk(sid, 0, 3, rig_id=rig))
        assert w.flush(10)
    with psycopg.connect(tdsn) as conn:
        for sid, rig in zip(sids, rigs, strict=True):
            assert conn.execute(
                "SELECT DISTINCT rig_id FROM pose_frames WHERE session_id = %s", (sid,)
            ).fetchall() == [(rig,)]
            assert conn.execute(
                "SELECT rig_id, frames FROM pose_rate_1s WHERE session_id = %s", (sid,)
            ).fetchall() == [(rig, 3)]
            assert _ranges(tdsn, sid) == [(0, 2)]
