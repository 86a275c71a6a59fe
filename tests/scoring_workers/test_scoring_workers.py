"""Scale-out scoring over real ZeroMQ sockets and real worker processes.

* the pool's windows, cues and final result equal the in-process scorer's, bit for bit;
* sessions spread over the workers and stay on theirs (affinity);
* a worker killed with SIGKILL mid-session: its sessions move to the other worker, which
  rebuilds their state from the samples stored in TimescaleDB (the pool keeps only a short
  tail), and the score windows continue with no gap and no duplicate;
* the wire protocol refuses a foreign major version.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from lab_controller import worker_protocol as W
from lab_controller.exercises import load_exercise
from lab_controller.scoring import Cue, FinalResult, ScoreWindow, SessionScorer
from lab_controller.scoring_workers import ScoringPool, final_to_json, telemetry_history
from telemetry.migrate import migrate
from telemetry.records import PoseBatch
from telemetry.writer import TelemetryWriter, WriterConfig

EXERCISE = "fillet_t_joint_h"
RATE = 120.0
CHUNK = 4  # samples per chunk: 33 ms at 120 Hz, as the rigs send


def session_data(seed: int, n: int = 2400) -> tuple[npt.NDArray[np.float32],
                                                     npt.NDArray[np.bool_]]:
    """A trainee following the expert's tool path with noise and a few tracking drop-outs."""
    ex = load_exercise(EXERCISE)
    rng = np.random.default_rng(seed)
    ref = ex.reference.tool_pose[:n].astype(np.float64)
    poses = np.zeros((ref.shape[0], 3, 7), np.float32)
    poses[:, :, 6] = 1.0
    noise = rng.normal(0, 0.8 + 0.4 * seed, (ref.shape[0], 3))
    poses[:, 0, :3] = ref[:, :3] + noise
    poses[:, 0, 3:] = ref[:, 3:]
    valid = np.ones((ref.shape[0], 3), bool)
    for start in rng.integers(100, ref.shape[0] - 20, 3):
        valid[start:start + 5, 0] = False
    return poses, valid


def in_process(poses: Any, valid: Any) -> tuple[list[ScoreWindow], list[Cue], FinalResult]:
    ex = load_exercise(EXERCISE)
    sc = SessionScorer(ex.scene["geometry"], ex.reference.tool_pose, ex.rubric, RATE, 0,
                       reference_rate=ex.rate_hz)
    windows: list[ScoreWindow] = []
    cues: list[Cue] = []
    for a in range(0, poses.shape[0], CHUNK):
        w, c = sc.feed(100.0 + a / RATE, 1 / RATE, poses[a:a + CHUNK], valid[a:a + CHUNK])
        windows += w
        cues += c
    return windows, cues, sc.finish()


class Collect:
    """A pool listener that keeps everything it is given."""

    def __init__(self) -> None:
        self.windows: dict[str, list[ScoreWindow]] = {}
        self.cues: dict[str, list[Cue]] = {}
        self.finals: dict[str, FinalResult] = {}
        self.lock = threading.Lock()

    def on_windows(self, sid: str, meta: Any, windows: list[ScoreWindow], seq_hi: int) -> None:
        with self.lock:
            self.windows.setdefault(sid, []).extend(windows)

    def on_cues(self, sid: str, meta: Any, cues: list[Cue]) -> None:
        with self.lock:
            self.cues.setdefault(sid, []).extend(cues)

    def on_final(self, sid: str, meta: Any, result: FinalResult) -> None:
        with self.lock:
            self.finals[sid] = result


def same_windows(a: list[ScoreWindow], b: list[ScoreWindow]) -> bool:
    # NaN-aware exact equality: compare the canonical JSON of each window
    from lab_controller.scoring_workers import window_to_json

    return [window_to_json(x) for x in a] == [window_to_json(x) for x in b]


@pytest.fixture(scope="module")
def pool2() -> Iterator[tuple[ScoringPool, Collect]]:
    col = Collect()
    pool = ScoringPool(listener=col).start()
    pool.spawn(2)
    pool.wait_workers(2)
    try:
        yield pool, col
    finally:
        pool.close()


def test_pool_equals_in_process_scoring_and_keeps_affinity(
        pool2: tuple[ScoringPool, Collect]) -> None:
    pool, col = pool2
    data = [session_data(s, 1500) for s in range(4)]
    sids = [str(uuid.uuid4()) for _ in data]
    for sid in sids:
        pool.open(sid, EXERCISE, RATE)
    for a in range(0, 1500, CHUNK):
        for sid, (poses, valid) in zip(sids, data, strict=True):
            pool.feed(sid, a, 100.0 + a / RATE, 1 / RATE, poses[a:a + CHUNK], valid[a:a + CHUNK])
    # The broker assigns sessions on its own thread: wait until every session has a home.
    deadline = time.monotonic() + 10.0
    while (any(pool.session_stats(sid)["worker"] is None for sid in sids)
           and time.monotonic() < deadline):
        time.sleep(0.01)
    homes = {sid: pool.session_stats(sid)["worker"] for sid in sids}
    assert None not in homes.values(), homes
    assert len(set(homes.values())) == 2  # load-balanced: two sessions per worker
    for sid in sids:
        pool.finish(sid)
    for sid, (poses, valid) in zip(sids, data, strict=True):
        final = pool.wait_final(sid)
        windows, cues, ref_final = in_process(poses, valid)
        assert final_to_json(final) == final_to_json(ref_final)
        assert same_windows(col.windows[sid], windows)
        assert [dataclasses.astuple(c) for c in col.cues.get(sid, [])] == \
            [dataclasses.astuple(c) for c in cues]
    assert sum(len(w["sessions"]) for w in pool.workers().values()) == 0


@pytest.fixture(scope="module")
def db(db_dsn: str) -> str:
    migrate(db_dsn)
    return db_dsn


def test_killed_worker_hands_sessions_over_without_a_gap(db: str, tmp_path: Path) -> None:
    col = Collect()
    # retain_s 0.3: the pool keeps only ~0.3 s of chunks, so a hand-over must rebuild the
    # session from the samples stored in the database
    pool = ScoringPool(listener=col, history=telemetry_history(db), retain_s=0.3).start()
    writer = TelemetryWriter(db, WriterConfig("site-w", tmp_path / "spool", max_batch_ms=10))
    writer.start()
    try:
        pool.spawn(2)
        pool.wait_workers(2)
        n = 2400
        data = [session_data(s, n) for s in range(4)]
        sids = [str(uuid.uuid4()) for _ in data]
        for sid in sids:
            pool.open(sid, EXERCISE, RATE)

        def feed(a: int, b: int) -> None:
            for k in range(a, b, CHUNK):
                for sid, (poses, valid) in zip(sids, data, strict=True):
                    p, v = poses[k:k + CHUNK], valid[k:k + CHUNK]
                    rt = 100.0 + k / RATE + np.arange(p.shape[0]) / RATE
                    bits = (1 << np.arange(3)).astype(np.int32)
                    writer.submit(PoseBatch(uuid.UUID(sid), "rig", k,
                                            np.rint(rt * 1e6).astype(np.int64), rt, p,
                                            np.zeros((p.shape[0], 0), np.float32),
                                            (v * bits).sum(axis=1).astype(np.int32)))
                    pool.feed(sid, k, 100.0 + k / RATE, 1 / RATE, p, v)

        feed(0, n // 2)
        writer.flush(10)
        time.sleep(0.6)  # past the retention: the tail the pool keeps is short now
        victim_pid = next(w["pid"] for w in pool.workers().values() if w["sessions"])
        victim = {sid for sid in sids
                  if pool.workers()[pool.session_stats(sid)["worker"]]["pid"] == victim_pid}
        retained = {sid: pool.session_stats(sid)["retained_chunks"] for sid in victim}
        assert all(r < (n // 2) // CHUNK // 4 for r in retained.values()), retained
        os.kill(victim_pid, signal.SIGKILL)
        feed(n // 2, n)  # the controller keeps feeding while the worker is gone
        writer.flush(10)
        deadline = time.monotonic() + 10
        while any(pool.session_stats(s)["handovers"] == 0 for s in victim):
            assert time.monotonic() < deadline, "sessions not handed over"
            time.sleep(0.05)
        assert pool.live_workers() == 1
        for sid in sids:
            pool.finish(sid)
        for sid, (poses, valid) in zip(sids, data, strict=True):
            final = pool.wait_final(sid, 60)
            windows, cues, ref_final = in_process(poses, valid)
            assert same_windows(col.windows[sid], windows), sid  # no gap, no duplicate
            assert final_to_json(final) == final_to_json(ref_final)
            # cues: none lost, none repeated (replayed chunks' cues are not sent twice)
            assert [dataclasses.astuple(c) for c in col.cues.get(sid, [])] == \
                [dataclasses.astuple(c) for c in cues]
        assert pool.counters["handovers"] == len(victim) >= 1
        assert pool.counters["window_gaps"] == 0
        assert pool.counters["rebuild_failures"] == 0
        assert pool.counters["replayed_replies"] > 0
    finally:
        pool.close()
        writer.close(10)


def test_worker_protocol_refuses_another_major_version() -> None:
    f0, f1 = W.encode({"type": "heartbeat"})
    bad = f0[:4] + bytes([W.MAJOR + 1]) + f0[5:]
    with pytest.raises(W.WorkerProtocolError, match="major"):
        W.decode([bad, f1])
    with pytest.raises(W.WorkerProtocolError):
        W.decode([b"LABP\x01\x00C\x00{}", b""])
    poses = np.arange(2 * 3 * 7, dtype=np.float32).reshape(2, 3, 7)
    valid = np.array([[True, False, True], [False, True, True]])
    p, v = W.unpack_chunk(2, 3, W.pack_chunk(poses, valid))
    assert np.array_equal(p, poses) and np.array_equal(v, valid)


def test_worker_protocol_is_a_leaf() -> None:
    """worker_protocol.py imports nothing from the project except lab_controller.protocol."""
    import ast

    tree = ast.parse(Path(W.__file__).read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    ours = {m for m in mods if m.split(".")[0] in
            ("lab_controller", "telemetry", "sim_kernels", "devices", "dashboards")}
    assert ours <= {"lab_controller.protocol"}, ours


def test_sessions_wait_for_a_first_worker_without_losing_data() -> None:
    """No worker yet (retain everything, no history): chunks are kept; the first worker to
    say ready gets the session replayed from its first sample."""
    col = Collect()
    pool = ScoringPool(listener=col).start()
    try:
        poses, valid = session_data(5, 800)
        sid = str(uuid.uuid4())
        pool.open(sid, EXERCISE, RATE)
        for a in range(0, 400, CHUNK):
            pool.feed(sid, a, 100.0 + a / RATE, 1 / RATE, poses[a:a + CHUNK], valid[a:a + CHUNK])
        pool.spawn(1)
        pool.wait_workers(1)
        for a in range(400, 800, CHUNK):
            pool.feed(sid, a, 100.0 + a / RATE, 1 / RATE, poses[a:a + CHUNK], valid[a:a + CHUNK])
        pool.finish(sid)
        final = pool.wait_final(sid, 60)
        windows, cues, ref = in_process(poses, valid)
        assert final_to_json(final) == final_to_json(ref)
        assert same_windows(col.windows[sid], windows)
        assert [dataclasses.astuple(c) for c in col.cues.get(sid, [])] == \
            [dataclasses.astuple(c) for c in cues]
    finally:
        pool.close()
