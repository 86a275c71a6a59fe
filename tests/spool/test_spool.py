"""The one spool: durability, ordering, recovery from torn writes, consumption and limits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from telemetry.spool import HEADER_SIZE, Spool, SpoolCorruptError, SpoolFullError


def test_append_sync_and_read_back_in_order(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        ids = [spool.append(f"rec-{i}".encode(), kind=i % 3) for i in range(100)]
        assert ids == list(range(1, 101))
        assert spool.sync() == 100
        got = list(spool.records())
    assert [r.id for r in got] == ids
    assert [r.payload for r in got] == [f"rec-{i}".encode() for i in range(100)]
    assert [r.kind for r in got] == [i % 3 for i in range(100)]


def test_reopen_keeps_records_and_continues_ids(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(10):
            spool.append(bytes([i]) * 50)
    with Spool(tmp_path) as spool:
        assert [r.id for r in spool.records()] == list(range(1, 11))
        assert spool.append(b"next") == 11


def test_consume_deletes_sealed_segments_and_survives_restart(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=1000) as spool:
        for _ in range(50):
            spool.append(b"x" * 100)
        spool.sync()
        segments_before = len(list(tmp_path.glob("seg-*.log")))
        assert segments_before > 3
        spool.consume_upto(40)
        assert spool.pending_records == 10
        assert len(list(tmp_path.glob("seg-*.log"))) < segments_before
        assert [r.id for r in spool.records()] == list(range(41, 51))
    with Spool(tmp_path, segment_bytes=1000) as spool:
        assert [r.id for r in spool.records()] == list(range(41, 51))
        spool.consume_upto(50)
        assert list(spool.records()) == []
        assert spool.append(b"after") == 51  # ids never go back even when all is consumed


def test_ids_continue_after_everything_consumed_and_deleted(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=10) as spool:
        for _ in range(5):
            spool.append(b"abcdefghijkl")
        spool.consume_upto(5)
    with Spool(tmp_path, segment_bytes=10) as spool:
        assert spool.append(b"z") == 6


def test_torn_tail_is_truncated_and_counted(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for _ in range(5):
            spool.append(b"p" * 30)
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    with seg.open("ab") as f:
        f.write(b"LSP1garbage-that-is-a-torn-write")
    with Spool(tmp_path) as spool:
        assert spool.truncated_bytes == len(b"LSP1garbage-that-is-a-torn-write")
        assert [r.id for r in spool.records()] == [1, 2, 3, 4, 5]
        assert spool.append(b"q") == 6


def test_corruption_before_the_tail_is_an_error_not_silent_loss(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=200) as spool:
        for _ in range(10):
            spool.append(b"r" * 60)
    first = sorted(tmp_path.glob("seg-*.log"))[0]
    data = bytearray(first.read_bytes())
    data[HEADER_SIZE + 5] ^= 0xFF  # flip a payload bit of the first record
    first.write_bytes(bytes(data))
    with pytest.raises(SpoolCorruptError, match="corrupt"):
        Spool(tmp_path, segment_bytes=200)


def test_size_limit_raises_full_and_keeps_earlier_records(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000) as spool:
        n = 0
        with pytest.raises(SpoolFullError):
            while True:
                spool.append(b"y" * 100)
                n += 1
        assert n == 1000 // (HEADER_SIZE + 100)
        assert len(list(spool.records())) == n
        spool.consume_upto(n)  # space comes back once consumed (sealed segments deleted)


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool, pytest.raises(ValueError, match="kind"):
        spool.append(b"x", kind=70000)


def test_synced_records_survive_kill_9(tmp_path: Path) -> None:
    """A process killed right after sync() returned loses nothing that sync() reported."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from telemetry.spool import Spool
        s = Spool({str(tmp_path)!r})
        for i in range(1000):
            s.append(i.to_bytes(4, "little") * 8)
        durable = s.sync()
        for i in range(1000, 1100):
            s.append(b"unsynced")  # buffered only
        print(durable, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy()
    )
    assert proc.returncode == -9
    durable = int(proc.stdout.strip())
    assert durable == 1000
    with Spool(tmp_path) as spool:
        recs = list(spool.records())
    assert len(recs) >= durable
    assert [r.id for r in recs[:durable]] == list(range(1, durable + 1))
    assert recs[999].payload == (999).to_bytes(4, "little") * 8


def test_fully_consumed_spool_frees_all_space_even_the_active_segment(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=10_000) as spool:
        assert spool.segment_bytes <= 64 * 1024
        for _ in range(50):
            spool.append(b"z" * 150)
        spool.sync()
        spool.consume_upto(spool.last_id)
        assert spool.pending_bytes == 0
        assert list(tmp_path.glob("seg-*.log")) == []
        # and it takes data again, ids continuing
        assert spool.append(b"again") == 51
        spool.sync()
    with Spool(tmp_path) as spool:
        assert [r.id for r in spool.records()] == [51]
