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
    be = lambda n, v: int(v).to_bytes(n, "big", signed=True)  # noqa: E731
    f4 = lambda v: np.array(v, ">f4").tobytes()  # noqa: E731
    expected = (
        be(2, 4)
        + be(4, 8) + be(8, 5)
        + be(4, 3) + b"abc"
        + be(4, 20 + 8 + 16) + be(4, 2) + be(4, 0) + be(4, 700) + be(4, 1) + be(4, 1)
        + be(4, 2) + be(4, 1) + be(4, 4) + f4(1.5) + be(4, 4) + f4(-2.0)
        + be(4, 12) + be(4, 0) + be(4, 0) + be(4, 700)
    )  # fmt: skip
    assert copybin.encode(rows, header=False, trailer=False) == expected
