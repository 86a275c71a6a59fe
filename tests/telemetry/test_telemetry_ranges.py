"""RangeSet and the binary COPY encoder against slow, obviously correct references."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry import copybin
from telemetry.ranges import RangeSet

spans = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30)), max_size=25)


def _reference(pairs: list[tuple[int, int]]) -> set[int]:
    out: set[int] = set()
    for lo, width in pairs:
        out.update(range(lo, lo + width + 1))
    return out


@settings(max_examples=300, deadline=None)
@given(spans, st.integers(0, 230), st.integers(0, 40))
def test_rangeset_matches_a_python_set(pairs: list[tuple[int, int]], q0: int, qn: int) -> None:
    rs = RangeSet()
    for lo, width in pairs:
        rs.add(lo, lo + width)
    ref = _reference(pairs)
    assert rs.count() == len(ref)
    iv = rs.intervals
    assert iv == sorted(iv)
    assert all(b + 1 < c for (_a, b), (c, _d) in itertools.pairwise(iv))  # merged
    assert {x for a, b in iv for x in range(a, b + 1)} == ref
    seqs = np.arange(q0, q0 + qn, dtype=np.int64)
    assert rs.missing_mask(seqs).tolist() == [int(s) not in ref for s in seqs]
    assert rs.disjoint(q0, q0 + qn) == (not any(x in ref for x in range(q0, q0 + qn + 1)))
    k = -1
    while k + 1 in ref:
        k += 1
    assert rs.contiguous_upto(0) == k
    rs2 = RangeSet()
    rs2.add_seqs(np.array(sorted(ref), dtype=np.int64))
    assert rs2 == rs


def test_copy_rows_match_the_manual_layout() -> None:
    """One row spelled out byte by byte as the PostgreSQL manual describes the binary format."""
    cols = [
        copybin.Column("t", "timestamptz"),
        copybin.Column("s", "bytes", size=3),
        copybin.Column("a", "float4_array", shape=(1, 2)),
        copybin.Column("e", "float4_array", shape=(0,)),
    ]
    rows = copybin.new_rows(cols, 1)
    rows["t"] = copybin.us_to_pg(np.array([copybin.PG_EPOCH_US + 5]))
    rows["s"] = b"abc"
    rows["a"]["e"]["v"] = np.array([[1.5, -2.0]], np.float32)

    def be(n: int, v: int) -> bytes:
        return int(v).to_bytes(n, "big", signed=True)

    def f4(v: float) -> bytes:
        return np.array(v, ">f4").tobytes()

    expected = (
        be(2, 4)
        + be(4, 8) + be(8, 5)
        + be(4, 3) + b"abc"
        + be(4, 20 + 8 + 16) + be(4, 2) + be(4, 0) + be(4, 700) + be(4, 1) + be(4, 1)
        + be(4, 2) + be(4, 1) + be(4, 4) + f4(1.5) + be(4, 4) + f4(-2.0)
        + be(4, 12) + be(4, 0) + be(4, 0) + be(4, 700)
    )  # fmt: skip
    assert copybin.encode(rows, header=False, trailer=False) == expected


def test_pose_batch_from_the_protocol_worked_example() -> None:
    """docs/protocol.md §6.4: T=2, A=1, 2 samples from seq 240, the hmd lost in sample 1."""
    import uuid

    from telemetry.records import PoseBatch

    torch0 = [100, 1200, -50, 0, 0, 0, 1]
    nan7 = [float("nan")] * 7
    floats = np.array(torch0 + torch0 + torch0 + nan7 + [0.0, 1.0], dtype="<f4").tobytes()
    sid = uuid.UUID("6f1c2a9e-3b4d-4e5f-8a7b-1c2d3e4f5a6b")
    b = PoseBatch.from_chunk(sid, "rig-7", 240, 2, 2, 1, floats, 5123.25, 1 / 120, -1.7e9,
                             mask=bytes([0x03, 0x01]))  # fmt: skip
    assert b.seqs.tolist() == [240, 241]
    assert b.valid_mask.tolist() == [0b11, 0b01]
    assert b.poses[0, 0].tolist() == torch0 and np.isnan(b.poses[1, 1]).all()
    assert b.analog.tolist() == [[0.0], [1.0]]
    assert b.rig_time[1] == 5123.25 + 1 / 120
    assert b.time_us.tolist() == [round((5123.25 + 1.7e9) * 1e6), round((5123.25 + 1 / 120 + 1.7e9) * 1e6)]
    all_valid = PoseBatch.from_chunk(sid, "r", 0, 2, 32, 0, np.zeros(2 * 32 * 7, "<f4"), 0.0, 0.01, 0.0)
    assert all_valid.valid_mask.tolist() == [-1, -1]  # 32 trackers: every bit set


def test_every_record_survives_the_spool_encoding() -> None:
    import uuid

    from telemetry_factories import make_pose_batch, score_batch

    from telemetry import records as rec

    sid = uuid.uuid4()
    pb = make_pose_batch(sid, 5, 3)
    back = rec.decode(rec.Kind.POSE, pb.to_bytes())
    assert isinstance(back, rec.PoseBatch)
    assert (back.session_id, back.rig_id, back.seq0) == (sid, pb.rig_id, 5)
    for name in ("time_us", "rig_time", "poses", "analog", "valid_mask"):
        assert np.array_equal(getattr(back, name), getattr(pb, name))
    sb = score_batch(sid, 0, 3)
    sback = rec.decode(rec.Kind.SCORE, sb.to_bytes())
    assert isinstance(sback, rec.ScoreWindowBatch) and sback.params == sb.params
    assert np.array_equal(sback.mean, sb.mean)
    small: list[rec.Record] = [
        rec.Cue(1, sid, "r", "too_high", "a", 2, 1.5, "m"),
        rec.SessionEvent(2, sid, "note", "r", {"x": [1, 2]}),
        rec.OpsMetric(3, "controller", "rigs_online", 4.0),
        rec.SessionRecord(sid, "r", "running", gap_count=2),
        rec.SessionResult(sid, "rb", 1, 50.0, False, metrics=(rec.MetricBreakdown("a", 1.0),)),
    ]
    for r in small:
        assert rec.decode(rec.kind_of(r), r.to_bytes()) == r
