"""Database outages: stopped with ``pg_ctl stop -m immediate`` mid-ingest, a writer restarted with
a non-empty spool, a full spool. Runs on a dedicated cluster so the shared one is never stopped."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from telemetry.cluster import ManagedCluster
from telemetry.migrate import migrate
from telemetry.records import PoseBatch
from telemetry.writer import TelemetryWriter, WriterConfig, WriterState

PB = Callable[..., PoseBatch]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[tuple[ManagedCluster, str]]:
    base = Path(tempfile.mkdtemp(prefix="labctl-outage-pg-"))
    os.chmod(base, 0o755)  # the server runs as `postgres` when the tests run as root
    cluster = ManagedCluster(base / "data")
    cluster.start()
    dsn = cluster.create_database("outage")
    migrate(dsn)
    try:
        yield cluster, dsn
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _check_exactly_once(dsn: str, sid: uuid.UUID, upto: int) -> None:
    with psycopg.connect(dsn) as conn:
        n, distinct, lo, hi = conn.execute(
            "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM pose_frames WHERE session_id = %s",
            (sid,),
        ).fetchone()  # type: ignore[misc]
    assert n == distinct, f"{n - distinct} frames stored twice"
    assert (lo, hi, n) == (0, upto, upto + 1), "frames missing"


def test_database_killed_mid_ingest(
    own_cluster: tuple[ManagedCluster, str], tmp_path: Path, pose_batch: PB
) -> None:
    cluster, dsn = own_cluster
    sids = [uuid.uuid4() for _ in range(3)]
    acked: dict[uuid.UUID, int] = {}
    lock = threading.Lock()

    def on_ack(update: dict[uuid.UUID, int]) -> None:
        with lock:
            acked.update(update)

    cfg = WriterConfig("site-a", tmp_path / "spool", retry_interval_s=0.1, max_batch_ms=10)
    writer = TelemetryWriter(dsn, cfg, on_ack=on_ack).start()
    next_seq = dict.fromkeys(sids, 0)
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            for sid in sids:
                writer.submit(pose_batch(sid, next_seq[sid], 12))
                next_seq[sid] += 12
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.6)
        acked_before_kill = dict(acked)
        cluster.stop("immediate")  # pg_ctl stop -m immediate: no checkpoint, like a crash
        time.sleep(0.6)
        assert writer.state in (WriterState.SPOOLING, WriterState.DATABASE)
        spooled = writer.stats().spooled_records
        assert spooled > 0, "nothing went to the spool while the database was down"
        with lock:
            during = dict(acked)
        cluster.start()
        time.sleep(0.4)
    finally:
        stop.set()
        producer.join()
    # the rigs resend what was not acknowledged before the outage (and a bit more): harmless
    for sid in sids:
        start = max(0, acked_before_kill.get(sid, 0) - 30)
        for s in range(start, next_seq[sid], 12):
            writer.submit(pose_batch(sid, s, min(12, next_seq[sid] - s)))
    assert writer.wait_drained(60), writer.stats()
    stats = writer.stats()
    writer.close()
    assert stats.outages >= 1 and stats.drained_records > 0
    assert stats.spool_pending_records == 0
    for sid in sids:
        # acks kept flowing during the outage (from the spool) ...
        assert during[sid] > acked_before_kill.get(sid, -1)
        # ... and every acknowledged frame is stored exactly once
        assert acked[sid] == next_seq[sid] - 1
        _check_exactly_once(dsn, sid, next_seq[sid] - 1)


def test_restarted_writer_drains_the_spool(
    own_cluster: tuple[ManagedCluster, str], tmp_path: Path, pose_batch: PB
) -> None:
    cluster, dsn = own_cluster
    sid = uuid.uuid4()
    cfg = WriterConfig("site-a", tmp_path / "spool", retry_interval_s=0.1, max_batch_ms=5)
    first = TelemetryWriter(dsn, cfg).start()
    first.submit(pose_batch(sid, 0, 24))
    assert first.flush(10)
    cluster.stop("immediate")
    for s in range(24, 240, 24):
        first.submit(pose_batch(sid, s, 24))
    assert first.flush(10)
    assert first.acked(sid) == 239  # durable in the spool
    first.close()  # the process "exits" with a non-empty spool
    cluster.start()
    second = TelemetryWriter(dsn, cfg)
    assert second.durable_ranges(sid).intervals == [(24, 239)]  # recovered from the spool
    assert second.stats().spool_pending_records > 0
    second.start()
    second.submit(pose_batch(sid, 240, 24))
    assert second.wait_drained(30), second.stats()
    assert second.acked(sid) == 263
    assert second.stats().spool_pending_records == 0
    second.close()
    _check_exactly_once(dsn, sid, 263)


def test_full_spool_stops_acknowledging(
    own_cluster: tuple[ManagedCluster, str], tmp_path: Path, pose_batch: PB
) -> None:
    cluster, dsn = own_cluster
    sid = uuid.uuid4()
    cfg = WriterConfig(
        "site-a", tmp_path / "spool", spool_max_bytes=256 * 1024, retry_interval_s=0.1,
        max_batch_ms=5, queue_max_rows=600,
    )  # fmt: skip
    writer = TelemetryWriter(dsn, cfg).start()
    cluster.stop("immediate")
    try:
        submitted = 0
        with pytest.raises(TimeoutError):  # the queue fills once the spool refuses data
            for s in range(0, 100_000, 24):
                writer.submit(pose_batch(sid, s, 24), timeout=2.0)
                submitted = s + 24
        assert writer.state is WriterState.STALLED
        assert "spool" in (writer.stats().error or "")
        acked = writer.acked(sid)
        assert 0 < acked < submitted - 1
        time.sleep(0.3)
        assert writer.acked(sid) == acked  # nothing more is acknowledged while stalled
    finally:
        cluster.start()
    assert writer.wait_drained(60), writer.stats()
    assert writer.acked(sid) == submitted - 1
    assert writer.stats().state is WriterState.DATABASE  # recovered by itself
    writer.close()
    _check_exactly_once(dsn, sid, submitted - 1)


def test_close_while_stalled_returns(
    own_cluster: tuple[ManagedCluster, str], tmp_path: Path, pose_batch: PB
) -> None:
    cluster, dsn = own_cluster
    sid = uuid.uuid4()
    cfg = WriterConfig("site-a", tmp_path / "spool", spool_max_bytes=64 * 1024, retry_interval_s=0.1,
                       max_batch_ms=5)  # fmt: skip
    cluster.stop("immediate")
    try:
        writer = TelemetryWriter(dsn, cfg).start()
        for s in range(0, 480, 24):
            writer.submit(pose_batch(sid, s, 24), timeout=5)
        deadline = time.monotonic() + 10
        while writer.state is not WriterState.STALLED and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.state is WriterState.STALLED
        t = time.monotonic()
        writer.close(timeout=10)
        assert time.monotonic() - t < 5
        assert writer.acked(sid) < 479  # the held batch was never acknowledged
    finally:
        cluster.start()
