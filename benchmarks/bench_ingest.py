"""Ingest benchmark: the telemetry writer vs a single binary COPY of a pre-built buffer vs psql CSV.

All three load the same pose frames (one row per frame, 6 trackers, 2 analog channels) into the
same ``pose_frames`` hypertable (with its session index), emptied before each run, interleaved and
repeated; medians and ratios are printed as JSON lines. Target (performance.md): writer ≥ 0.8×
the pre-built binary COPY.

- ``writer``: ``TelemetryWriter.submit`` of 12-frame ``PoseBatch`` chunks from ``--rigs`` sessions
  (what the controller hands over), timed from the first submit until ``flush`` returns. Includes
  everything the writer does: dedup filtering, encoding, ranges and per-second rollup upserts,
  commits every ``max_batch_rows``.
- ``copy_prebuilt``: one psycopg ``COPY ... FROM STDIN (FORMAT BINARY)`` of a buffer encoded
  beforehand (encoding not timed), one transaction.
- ``psql_csv``: ``psql -c "\\copy pose_frames FROM file CSV"`` of the same rows as CSV.

Usage: ``.venv/bin/python benchmarks/bench_ingest.py [--frames 240000] [--repeat 3] [--dsn DSN]``
Without ``--dsn`` a throw-away managed cluster is started in a temporary directory.
With ``--layouts`` it also measures the two pose row layouts (per frame vs per tracker).

``--chunks`` measures the controller's hand-over at capacity instead (200 rigs × 120 Hz in 20 ms
chunks = ~10,000 chunks/s of 2–3 frames): 3-frame chunks of ``--chunk-rigs`` sessions,
interleaved, 6 trackers, the same frames three ways, interleaved and repeated:

- ``posechunk``: ``TelemetryWriter.submit(PoseChunk(...))`` per chunk (views of each chunk's
  received float buffer, no numpy on the caller's thread);
- ``posebatch``: what ``TelemetrySink.submit`` does per chunk before that (rig times, validity
  mask and corrected times with numpy, ``PoseBatch`` with its validation, then ``submit``);
- ``copy_prebuilt``: the single binary COPY of a buffer encoded beforehand.

Each as fast as the producer can go, timed from the first submit until ``flush`` returns;
frames/s medians, paired ratios, and the caller thread's µs per chunk (wall and thread CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from telemetry import copybin
from telemetry.cluster import ManagedCluster
from telemetry.migrate import migrate
from telemetry.records import PoseBatch, PoseChunk, ScoreWindowBatch
from telemetry.store import pose_columns
from telemetry.writer import TelemetryWriter, WriterConfig

CHUNK = 12  # frames per rig message: 100 ms at 120 Hz (performance.md: batch 10-30 ms+)
TRACKERS = 6
ANALOG = 2
T0_US = 1_793_520_000_000_000


def emit(**kw: Any) -> None:
    print(json.dumps(kw, sort_keys=True), flush=True)


def make_batches(frames: int, rigs: int) -> list[PoseBatch]:
    """Interleaved 12-frame chunks of ``rigs`` sessions, ``frames`` frames in all."""
    per_rig = frames // rigs
    rng = np.random.default_rng(7)
    out: list[PoseBatch] = []
    sids = [uuid.uuid4() for _ in range(rigs)]
    for s0 in range(0, per_rig, CHUNK):
        n = min(CHUNK, per_rig - s0)
        for r, sid in enumerate(sids):
            seqs = np.arange(s0, s0 + n, dtype=np.int64)
            out.append(
                PoseBatch(
                    session_id=sid,
                    rig_id=f"rig-{r:02d}",
                    seq0=s0,
                    time_us=T0_US + seqs * 8_333 + r,
                    rig_time=1000.0 + seqs / 120.0,
                    poses=rng.standard_normal((n, TRACKERS, 7)).astype(np.float32),
                    analog=rng.random((n, ANALOG), dtype=np.float32),
                    valid_mask=np.full(n, 63, np.int32),
                )
            )
    return out


def prebuilt_buffer(batches: list[PoseBatch]) -> bytes:
    """The same rows as one binary COPY stream (not timed)."""
    n = sum(b.n for b in batches)
    rows = copybin.new_rows(pose_columns(6, TRACKERS, ANALOG), n)
    rows["time"] = copybin.us_to_pg(np.concatenate([b.time_us for b in batches]))
    rows["rig_time"] = np.concatenate([b.rig_time for b in batches])
    rows["session_id"] = np.concatenate([np.repeat(copybin.uuid_bytes(b.session_id), b.n) for b in batches])
    rows["rig_id"] = np.concatenate([np.repeat(np.bytes_(b.rig_id), b.n) for b in batches])
    rows["seq"] = np.concatenate([b.seqs for b in batches])
    rows["poses"]["e"]["v"] = np.concatenate([b.poses for b in batches]).reshape(n, -1)
    rows["analog"]["e"]["v"] = np.concatenate([b.analog for b in batches])
    rows["valid_mask"] = np.concatenate([b.valid_mask for b in batches])
    return copybin.encode(rows)


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pose_frames, ingest_ranges, pose_rate_1s")
        conn.execute("CHECKPOINT")  # each run starts without the previous run's dirty pages


POSE_COPY = (
    "COPY pose_frames (time, rig_time, session_id, rig_id, seq, poses, analog, valid_mask) "
    "FROM STDIN (FORMAT BINARY)"
)


def copy_buffer(conn: psycopg.Connection[Any], buf: bytes) -> None:
    """One binary COPY of a pre-built pose_frames buffer, in 1 MiB writes (no commit)."""
    with conn.cursor().copy(POSE_COPY) as copy:
        mv = memoryview(buf)
        for i in range(0, len(buf), 1 << 20):
            copy.write(mv[i : i + (1 << 20)])


def run_copy(dsn: str, buf: bytes) -> float:
    reset(dsn)
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        copy_buffer(conn, buf)
        conn.commit()
        return time.perf_counter() - t


def run_psql(dsn: str, csv_path: Path) -> float:
    reset(dsn)
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("psql not found (postgresql-client)")
    t = time.perf_counter()
    subprocess.run(
        [psql, dsn, "-q", "-v", "ON_ERROR_STOP=1", "-c",
         f"\\copy pose_frames (time, rig_time, session_id, rig_id, seq, poses, analog, valid_mask) "
         f"FROM '{csv_path}' WITH (FORMAT csv)"],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - t


def run_writer(dsn: str, batches: list[PoseBatch], spool_dir: Path) -> tuple[float, dict[str, Any]]:
    reset(dsn)
    shutil.rmtree(spool_dir, ignore_errors=True)
    cfg = WriterConfig("bench", spool_dir, metrics_interval_s=3600)
    w = TelemetryWriter(dsn, cfg).start()
    # warm the connection so connect time is not counted (the controller's writer is long-lived)
    deadline = time.monotonic() + 10
    while w.state.value != "database" and time.monotonic() < deadline:
        time.sleep(0.01)
    t = time.perf_counter()
    for b in batches:
        w.submit(b)
    assert w.flush(600)
    elapsed = time.perf_counter() - t
    st = w.stats()
    w.close()
    expected = sum(b.n for b in batches)
    if st.rows_written != expected:
        raise SystemExit(f"writer stored {st.rows_written} of {expected} rows")
    return elapsed, {"transactions": st.transactions, "spooled_records": st.spooled_records}


class WireChunk:
    """A received chunk as the controller holds it (protocol.SampleChunk's fields): read-only
    views of one float32 buffer, the validity array, the header's first rig time and period."""

    __slots__ = ("analog", "n", "period", "poses", "rig_id", "rig_t0", "seq0", "session_id", "valid")

    def __init__(self, sid: uuid.UUID, rig_id: str, seq0: int, n: int, rng: np.random.Generator) -> None:
        buf = np.frombuffer(
            rng.standard_normal(n * (TRACKERS * 7 + ANALOG)).astype("<f4").tobytes(), "<f4"
        )
        self.session_id, self.rig_id, self.seq0, self.n = sid, rig_id, seq0, n
        self.poses = buf[: n * TRACKERS * 7].reshape(n, TRACKERS, 7)
        self.analog = buf[n * TRACKERS * 7 :].reshape(n, ANALOG)
        self.valid = np.frombuffer(b"\x01" * (n * TRACKERS), np.bool_).reshape(n, TRACKERS)
        self.rig_t0 = 1_793_520_000.0 + seq0 / 120.0
        self.period = 1 / 120.0


CHUNK_OFFSET_S = 0.0123456  # rig clock − controller clock, as bound per session


def make_wire_chunks(frames: int, rigs: int, per_chunk: int = 3) -> list[WireChunk]:
    """Interleaved ``per_chunk``-frame chunks of ``rigs`` sessions, ``frames`` frames in all."""
    per_rig = frames // rigs
    rng = np.random.default_rng(11)
    sids = [uuid.uuid4() for _ in range(rigs)]
    out: list[WireChunk] = []
    for s0 in range(0, per_rig, per_chunk):
        n = min(per_chunk, per_rig - s0)
        out.extend(WireChunk(sid, f"rig-{r:03d}", s0, n, rng) for r, sid in enumerate(sids))
    return out


def submit_posechunks(w: TelemetryWriter, chunks: list[WireChunk]) -> None:
    """The new hand-over: one PoseChunk per chunk (valid None: every tracker tracked)."""
    submit, make, off = w.submit, PoseChunk, CHUNK_OFFSET_S
    for c in chunks:
        submit(make(c.session_id, c.rig_id, c.seq0, c.n, c.rig_t0, c.period, off, c.poses, c.analog, None))


def submit_posebatches(w: TelemetryWriter, chunks: list[WireChunk]) -> None:
    """lab_controller.pipeline.TelemetrySink.submit before PoseChunk (restated: benchmarks of
    the telemetry package do not import the controller)."""
    for c in chunks:
        rig_times = np.asarray(c.rig_t0 + np.arange(c.n, dtype=np.float64) * c.period, np.float64)
        n, t = c.valid.shape
        if c.valid.all():
            mask = np.full(n, (1 << t) - 1, np.int32)
        else:
            bits = (np.uint32(1) << np.arange(t, dtype=np.uint32)).astype(np.int64)
            mask = (c.valid.astype(np.int64) * bits).sum(axis=1).astype(np.int32)
        w.submit(
            PoseBatch(
                session_id=c.session_id,
                rig_id=c.rig_id,
                seq0=c.seq0,
                time_us=np.rint((rig_times - CHUNK_OFFSET_S) * 1e6).astype(np.int64),
                rig_time=rig_times,
                poses=c.poses,
                analog=c.analog,
                valid_mask=mask,
            )
        )


def run_chunk_writer(
    dsn: str, chunks: list[WireChunk], spool_dir: Path, method: str
) -> tuple[float, float, float, dict[str, Any]]:
    """(seconds until flush, caller wall s, caller thread CPU s, writer stats) of one run."""
    reset(dsn)
    shutil.rmtree(spool_dir, ignore_errors=True)
    w = TelemetryWriter(dsn, WriterConfig("bench", spool_dir, metrics_interval_s=3600)).start()
    deadline = time.monotonic() + 10
    while w.state.value != "database" and time.monotonic() < deadline:
        time.sleep(0.01)
    feed = submit_posechunks if method == "posechunk" else submit_posebatches
    t = time.perf_counter()
    c0 = time.thread_time()
    feed(w, chunks)
    caller_cpu = time.thread_time() - c0
    caller_wall = time.perf_counter() - t
    assert w.flush(600)
    elapsed = time.perf_counter() - t
    st = w.stats()
    w.close()
    expected = sum(c.n for c in chunks)
    if st.rows_written != expected:
        raise SystemExit(f"{method}: writer stored {st.rows_written} of {expected} rows")
    return elapsed, caller_wall, caller_cpu, {"transactions": st.transactions}


def chunk_case(dsn: str, frames: int, rigs: int, repeat: int, tmp: Path) -> None:
    """PoseChunk vs PoseBatch-per-chunk vs the pre-built COPY (see the module docstring)."""
    chunks = make_wire_chunks(frames, rigs)
    n_frames = sum(c.n for c in chunks)
    ref = [
        PoseChunk(c.session_id, c.rig_id, c.seq0, c.n, c.rig_t0, c.period, CHUNK_OFFSET_S, c.poses,
                  c.analog).to_pose_batch()
        for c in chunks
    ]  # fmt: skip
    rows = copybin.new_rows(pose_columns(7, TRACKERS, ANALOG), n_frames)
    rows["time"] = copybin.us_to_pg(np.concatenate([b.time_us for b in ref]))
    rows["rig_time"] = np.concatenate([b.rig_time for b in ref])
    rows["session_id"] = np.concatenate([np.repeat(copybin.uuid_bytes(b.session_id), b.n) for b in ref])
    rows["rig_id"] = np.concatenate([np.repeat(np.bytes_(b.rig_id), b.n) for b in ref])
    rows["seq"] = np.concatenate([b.seqs for b in ref])
    rows["poses"]["e"]["v"] = np.concatenate([b.poses for b in ref]).reshape(n_frames, -1)
    rows["analog"]["e"]["v"] = np.concatenate([b.analog for b in ref])
    rows["valid_mask"] = np.concatenate([b.valid_mask for b in ref])
    buf = copybin.encode(rows)
    emit(bench="ingest_chunks", setup=True, frames=n_frames, chunks=len(chunks), rigs=rigs,
         frames_per_chunk=3, trackers=TRACKERS, analog=ANALOG, cpus=os.cpu_count(),
         load_avg=[round(x, 2) for x in os.getloadavg()])  # fmt: skip
    methods = ["posechunk", "posebatch", "copy_prebuilt"]
    times: dict[str, list[float]] = {m: [] for m in methods}
    caller: dict[str, list[tuple[float, float]]] = {m: [] for m in methods[:2]}
    for rep in range(repeat):
        order = methods[rep % 3 :] + methods[: rep % 3]
        for method in order:
            if method == "copy_prebuilt":
                el = run_copy(dsn, buf)
                emit(bench="ingest_chunks", method=method, repeat=rep, seconds=round(el, 3),
                     frames_per_s=round(n_frames / el))  # fmt: skip
            else:
                el, cw, cc, extra = run_chunk_writer(dsn, chunks, tmp / "spool", method)
                caller[method].append((cw, cc))
                emit(bench="ingest_chunks", method=method, repeat=rep, seconds=round(el, 3),
                     frames_per_s=round(n_frames / el),
                     caller_us_per_chunk=round(cw / len(chunks) * 1e6, 2),
                     caller_cpu_us_per_chunk=round(cc / len(chunks) * 1e6, 2), **extra)  # fmt: skip
            times[method].append(el)
    med = {m: statistics.median(v) for m, v in times.items()}
    for m in methods:
        extra_m: dict[str, Any] = {}
        if m in caller:
            per = 1e6 / len(chunks)
            extra_m = {
                "caller_us_per_chunk": round(statistics.median(c[0] for c in caller[m]) * per, 2),
                "caller_cpu_us_per_chunk": round(statistics.median(c[1] for c in caller[m]) * per, 2),
            }
        emit(bench="ingest_chunks", method=m, median_seconds=round(med[m], 3),
             frames_per_s=round(n_frames / med[m]), **extra_m)  # fmt: skip

    def paired(a: str, b: str) -> list[float]:
        """Per repeat: frames/s of a over frames/s of b (runs next to each other in time)."""
        return [tb / ta for ta, tb in zip(times[a], times[b], strict=True)]

    pc_pb = paired("posechunk", "posebatch")
    pc_cp = paired("posechunk", "copy_prebuilt")
    pb_cp = paired("posebatch", "copy_prebuilt")
    emit(
        bench="ingest_chunks",
        ratio_posechunk_vs_posebatch=round(med["posebatch"] / med["posechunk"], 3),
        paired_posechunk_vs_posebatch=round(statistics.median(pc_pb), 3),
        ratio_posechunk_vs_copy_prebuilt=round(med["copy_prebuilt"] / med["posechunk"], 3),
        paired_posechunk_vs_copy_prebuilt=round(statistics.median(pc_cp), 3),
        ratio_posebatch_vs_copy_prebuilt=round(med["copy_prebuilt"] / med["posebatch"], 3),
        paired_posebatch_vs_copy_prebuilt=round(statistics.median(pb_cp), 3),
        paired_ratios={"posechunk_vs_posebatch": [round(x, 3) for x in pc_pb],
                       "posechunk_vs_copy_prebuilt": [round(x, 3) for x in pc_cp],
                       "posebatch_vs_copy_prebuilt": [round(x, 3) for x in pb_cp]},
        load_avg=[round(x, 2) for x in os.getloadavg()],
    )  # fmt: skip


def layouts(dsn: str, frames: int) -> None:
    """Per-frame arrays vs one row per tracker, binary COPY into a hypertable (the schema choice)."""
    batches = make_batches(frames, 1)
    buf_frame = prebuilt_buffer(batches)
    cols = [
        copybin.Column("time", "timestamptz"),
        copybin.Column("rig_time", "float8"),
        copybin.Column("session_id", "uuid"),
        copybin.Column("rig_id", "bytes", size=6),
        copybin.Column("seq", "int8"),
        copybin.Column("tracker", "int2"),
        *[copybin.Column(c, "float4") for c in ("px", "py", "pz", "qw", "qx", "qy", "qz")],
        copybin.Column("valid", "bool"),
    ]
    n = frames * TRACKERS
    r = copybin.new_rows(cols, n)
    poses = np.concatenate([b.poses for b in batches]).reshape(-1, 7)
    r["time"] = copybin.us_to_pg(np.repeat(np.concatenate([b.time_us for b in batches]), TRACKERS))
    r["rig_time"] = np.repeat(np.concatenate([b.rig_time for b in batches]), TRACKERS)
    r["session_id"] = copybin.uuid_bytes(batches[0].session_id)
    r["rig_id"] = b"rig-00"
    r["seq"] = np.repeat(np.concatenate([b.seqs for b in batches]), TRACKERS)
    r["tracker"] = np.tile(np.arange(TRACKERS), frames)
    for i, c in enumerate(("px", "py", "pz", "qw", "qx", "qy", "qz")):
        r[c] = poses[:, i]
    r["valid"] = 1
    buf_tracker = copybin.encode(r)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_tracker_rows (time timestamptz NOT NULL, "
            "rig_time float8, session_id uuid, rig_id text, seq int8, tracker int2, px real, "
            "py real, pz real, qw real, qx real, qy real, qz real, valid bool)"
        )
        conn.execute(
            "SELECT create_hypertable('bench_tracker_rows', 'time', "
            "chunk_time_interval => interval '30 minutes', if_not_exists => true)"
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS bench_tracker_rows_session ON bench_tracker_rows "
            "(session_id, time DESC)"
        )
    res: dict[str, list[float]] = {"frame": [], "tracker": []}
    sizes: dict[str, int] = {}
    for _ in range(3):
        res["frame"].append(run_copy(dsn, buf_frame))
        with psycopg.connect(dsn) as conn:
            sizes["frame"] = int(conn.execute("SELECT hypertable_size('pose_frames')").fetchone()[0])  # type: ignore[index]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE bench_tracker_rows")
            conn.execute("CHECKPOINT")
        with psycopg.connect(dsn) as conn:
            t = time.perf_counter()
            with conn.cursor().copy("COPY bench_tracker_rows FROM STDIN (FORMAT BINARY)") as copy:
                mv = memoryview(buf_tracker)
                for i in range(0, len(buf_tracker), 1 << 20):
                    copy.write(mv[i : i + (1 << 20)])
            conn.commit()
            res["tracker"].append(time.perf_counter() - t)
            sizes["tracker"] = int(
                conn.execute("SELECT hypertable_size('bench_tracker_rows')").fetchone()[0]  # type: ignore[index]
            )
    for layout, times in res.items():
        m = statistics.median(times)
        rows = frames if layout == "frame" else n
        emit(bench="pose_layout", layout=layout, poses=n, rows=rows, seconds=round(m, 3),
             poses_per_s=round(n / m), rows_per_s=round(rows / m),
             table_bytes=sizes[layout], bytes_per_row=round(sizes[layout] / rows))  # fmt: skip


# ════════════════════════════════════════════════════════════════ paced capacity load, A/B

PACED_TRACKERS = 6  # devices.sim.trainee.LOAD_TEST_TRACKERS
PACED_ANALOG = 1  # the simulated rigs' trigger channel (devices/sim/rig.py)
PACED_CHUNK_S = 0.02  # the rigs' chunk interval (bench_capacity's default)
PACED_PARAMS = ("work_angle", "travel_angle", "ctwd", "speed", "aim")
PACED_TABLES = "ingest_ranges, pose_rate_1s, score_windows, score_window_params"
"""Emptied before each paced run; pose_frames keeps the prefill and the earlier runs' rows."""


def _proc_cpu(stat_path: str, children: bool = False) -> float:
    """utime + stime (+ cutime + cstime: reaped children) of one /proc stat file, seconds."""
    try:
        with open(stat_path, encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _pg_role(pid: int) -> str:
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for key, role in (("[local]", "backend"), ("127.0.0.1", "backend"), ("walwriter", "walwriter"),
                      ("checkpointer", "checkpointer"), ("background writer", "bgwriter"),
                      ("autovacuum", "autovacuum")):  # fmt: skip
        if key in title:
            return role
    return "other"


def pg_cpu(data_dir: Path) -> dict[str, float]:
    """CPU seconds of a cluster's processes by role; ``reaped`` = postmaster's own + its exited
    children (short-lived autovacuum workers), so deltas over a window miss nothing."""
    root = int((data_dir / "postmaster.pid").read_text().split()[0])
    out: dict[str, float] = {"reaped": _proc_cpu(f"/proc/{root}/stat", children=True)}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == root:
            role = _pg_role(int(entry))
            out[role] = out.get(role, 0.0) + _proc_cpu(f"/proc/{entry}/stat")
    out["total"] = sum(out.values())
    return out


def _arm_setup(data_dir: Path, pg_stat: bool, prefill: int) -> None:
    """Start this checkout's managed cluster in ``data_dir``, migrate; print its DSN."""
    import telemetry

    cluster = ManagedCluster(data_dir)
    if pg_stat and cluster.init():
        with (data_dir / "postgresql.conf").open("a") as f:
            f.write("shared_preload_libraries = 'timescaledb,pg_stat_statements'\n"
                    "pg_stat_statements.track_utility = on\n")  # fmt: skip
    cluster.start()
    dsn = cluster.create_database("bench")
    migrate(dsn)
    if pg_stat:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    if prefill:
        _prefill(dsn, prefill)
    emit(arm_setup=True, dsn=dsn, code=str(Path(telemetry.__file__).parent.parent))


def _prefill(dsn: str, frames: int, rigs: int = 200) -> None:
    """``frames`` rows of ``rigs`` sessions over the last minute in one binary COPY (not timed),
    so the paced runs write into a chunk whose indexes have the depth of a running lab's (the
    capacity run writes ~0.8M frames per step) instead of starting from an empty table."""
    n = frames // rigs * rigs
    sids = np.frombuffer(b"".join(uuid.uuid4().bytes for _ in range(rigs)), dtype="V16")
    rng = np.random.default_rng(5)
    rows = copybin.new_rows(pose_columns(7, PACED_TRACKERS, PACED_ANALOG), n)
    now_us = int(time.time() * 1e6)
    t = now_us - 60_000_000 + (np.arange(n, dtype=np.int64) // rigs) * (60_000_000 * rigs // n)
    rows["time"] = copybin.us_to_pg(t)
    rows["rig_time"] = t / 1e6
    rows["session_id"] = np.tile(sids, n // rigs)
    rows["rig_id"] = np.tile(np.array([f"pre-{r:03d}".encode() for r in range(rigs)]), n // rigs)
    rows["seq"] = np.arange(n, dtype=np.int64) // rigs
    rows["poses"]["e"]["v"] = rng.standard_normal((n, PACED_TRACKERS * 7)).astype(np.float32)
    rows["analog"]["e"]["v"] = rng.random((n, PACED_ANALOG), dtype=np.float32)
    rows["valid_mask"] = (1 << PACED_TRACKERS) - 1
    with psycopg.connect(dsn) as conn:
        copy_buffer(conn, copybin.encode(rows))


def _paced_drive(writer: TelemetryWriter, rigs: int, hz: float, seconds: float, window_ms: float,
                 on_tick: Any) -> int:
    """Submit ``rigs`` sessions' chunks in real time (every PACED_CHUNK_S, 120 Hz frames) and a
    one-window ScoreWindowBatch per rig every ``window_ms`` (0: none); returns chunks sent."""
    rng = np.random.default_rng(3)
    sids = [uuid.uuid4() for _ in range(rigs)]
    rig_ids = [f"cap-{r + 1:03d}" for r in range(rigs)]
    ring = int(hz) + 8  # one second of frames per rig, chunks are views into it
    poses = rng.standard_normal((rigs, ring, PACED_TRACKERS, 7)).astype(np.float32)
    analog = rng.random((rigs, ring, PACED_ANALOG), dtype=np.float32)
    t_rig0 = time.time()
    # each rig's own clock: sampling phase within a period and offset to the controller's clock
    # (corrected times then interleave across rigs as in a lab, not in lockstep)
    phase = rng.random(rigs) / hz
    offset = rng.uniform(-0.05, 0.05, rigs)
    period = 1.0 / hz
    seqs = [0] * rigs
    windows = [0] * rigs
    every = max(1, round(window_ms / 1000 / PACED_CHUNK_S)) if window_ms > 0 else 0
    band = np.array([1.0] * len(PACED_PARAMS), np.float32)
    submit = writer.submit
    start = time.monotonic()
    tick = chunks = 0
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            return chunks
        target = tick * PACED_CHUNK_S
        if target > now:
            time.sleep(target - now)
        due = int((tick + 1) * PACED_CHUNK_S * hz)
        for r in range(rigs):
            s0 = seqs[r]
            n = due - s0
            if n <= 0:
                continue
            i = s0 % int(hz)
            submit(PoseChunk(sids[r], rig_ids[r], s0, n, t_rig0 + phase[r] + offset[r] + s0 * period,
                             period, float(offset[r]),
                             poses[r, i : i + n], analog[r, i : i + n], None))  # fmt: skip
            seqs[r] = due
            chunks += 1
            if every and (tick + r) % every == 0:
                w = windows[r]
                windows[r] += 1
                one = np.ones((1, len(PACED_PARAMS)), np.float32)
                submit(ScoreWindowBatch(
                    session_id=sids[r], rig_id=rig_ids[r], window_idx=np.array([w], np.int32),
                    time_us=np.array([int((t_rig0 + due * period) * 1e6)], np.int64),
                    seq_hi=np.array([due - 1], np.int64), progress=np.array([0.5], np.float32),
                    alignment_distance=np.array([1.0], np.float32),
                    window_score=np.array([80.0], np.float32), params=PACED_PARAMS,
                    mean=one, std=one, frac_in_window=one, ideal=band, lo=band - 1, hi=band + 1,
                ))  # fmt: skip
        tick += 1
        on_tick(now)


def _arm_run(dsn: str, data_dir: Path, args: argparse.Namespace, tmp: Path) -> None:
    """One paced run of this checkout's writer; prints one JSON line with CPU per frame."""
    import telemetry

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {PACED_TABLES}")
        conn.execute("CHECKPOINT")
        if args.pg_stat:
            conn.execute("SELECT pg_stat_statements_reset()")
    if args.arm_label.startswith("prebuilt"):
        return _arm_prebuilt(dsn, data_dir, args)
    cfg = WriterConfig("bench", tmp / "spool", max_batch_ms=args.paced_batch_ms)
    w = TelemetryWriter(dsn, cfg).start()
    deadline = time.monotonic() + 10
    while w.state.value != "database" and time.monotonic() < deadline:
        time.sleep(0.01)
    snaps: list[dict[str, Any]] = []
    lsn_conn = psycopg.connect(dsn, autocommit=True)

    def snap() -> dict[str, Any]:
        wt = next(t for t in threading.enumerate() if t.name == "telemetry-writer")
        st = w.stats()
        lsn = lsn_conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        return {"t": time.monotonic(), "pg": pg_cpu(data_dir), "proc": time.process_time(),
                "writer": _proc_cpu(f"/proc/self/task/{wt.native_id}/stat"),
                "driver": time.thread_time(), "rows": st.rows_written,
                "tx": st.transactions, "windows": st.score_windows_written,
                "wal": int(lsn[0]) if lsn else 0}  # fmt: skip

    def on_tick(now: float) -> None:
        if not snaps and now >= args.paced_warmup:
            snaps.append(snap())

    _paced_drive(w, args.paced_rigs, args.paced_hz, args.paced_warmup + args.paced_seconds,
                 args.paced_window_ms, on_tick)
    snaps.append(snap())
    queue_end = w.stats().queue_rows
    lsn_conn.close()
    assert w.flush(120)
    w.close()
    a, b = snaps
    wall = b["t"] - a["t"]
    frames = b["rows"] - a["rows"]
    us = 1e6 / max(1, frames)
    pg = {k: v - a["pg"].get(k, 0.0) for k, v in b["pg"].items()}
    out: dict[str, Any] = {
        "bench": "ingest_paced", "arm": args.arm_label, "code": str(Path(telemetry.__file__).parent.parent),
        "window_s": round(wall, 2), "frames_per_s": round(frames / wall),
        "commits_per_s": round((b["tx"] - a["tx"]) / wall, 2),
        "frames_per_commit": round(frames / max(1, b["tx"] - a["tx"])),
        "windows_per_s": round((b["windows"] - a["windows"]) / wall),
        "wal_bytes_per_frame": round((b["wal"] - a["wal"]) / max(1, frames)),
        "pg_cores": {k: round(v / wall, 3) for k, v in sorted(pg.items())},
        "pg_us_per_frame": round(pg["total"] * us, 2),
        "pg_backend_us_per_frame": round(pg.get("backend", 0.0) * us, 2),
        "writer_cores": round((b["writer"] - a["writer"]) / wall, 3),
        "writer_us_per_frame": round((b["writer"] - a["writer"]) * us, 2),
        "process_cores": round((b["proc"] - a["proc"]) / wall, 3),
        "driver_cores": round((b["driver"] - a["driver"]) / wall, 3),
        "queue_rows_end": queue_end, "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    emit(**out)
    if args.pg_stat:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT calls, round(total_exec_time::numeric, 1), rows, "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements "
                "ORDER BY total_exec_time DESC LIMIT 12"
            ).fetchall()
        for calls, ms, nrows, q in rows:
            emit(bench="ingest_paced_stmt", arm=args.arm_label, calls=calls, total_ms=float(ms),
                 rows=nrows, query=q)  # fmt: skip


def _arm_prebuilt(dsn: str, data_dir: Path, args: argparse.Namespace) -> None:
    """The floor: pre-built binary COPY buffers of the same pose rows (200 interleaved sessions,
    120 Hz), one transaction each at the writer arms' commit rate (``--prebuilt-cps``); no range
    bookkeeping, no rollup, no score windows, encoding not timed."""
    rigs, hz, cps = args.paced_rigs, args.paced_hz, args.prebuilt_cps
    total = args.paced_warmup + args.paced_seconds
    per_commit = round(hz / cps)  # frames per rig per transaction
    sids = np.frombuffer(b"".join(uuid.uuid4().bytes for _ in range(rigs)), dtype="V16")
    rig_ids = np.array([f"cap-{r + 1:03d}".encode() for r in range(rigs)])
    rng = np.random.default_rng(9)
    t0_us = int(time.time() * 1e6)
    bufs: list[bytes] = []
    n = rigs * per_commit
    for k in range(int(total * cps) + 1):
        rows = copybin.new_rows(pose_columns(7, PACED_TRACKERS, PACED_ANALOG), n)
        seq = k * per_commit + np.arange(n, dtype=np.int64) // rigs
        t = t0_us + (seq * 1e6 / hz).astype(np.int64)
        rows["time"] = copybin.us_to_pg(t)
        rows["rig_time"] = t / 1e6
        rows["session_id"] = np.tile(sids, per_commit)
        rows["rig_id"] = np.tile(rig_ids, per_commit)
        rows["seq"] = seq
        rows["poses"]["e"]["v"] = rng.standard_normal((n, PACED_TRACKERS * 7)).astype(np.float32)
        rows["analog"]["e"]["v"] = rng.random((n, PACED_ANALOG), dtype=np.float32)
        rows["valid_mask"] = (1 << PACED_TRACKERS) - 1
        bufs.append(copybin.encode(rows))
    snaps: list[dict[str, Any]] = []
    with psycopg.connect(dsn) as conn:
        start = time.monotonic()
        for k, buf in enumerate(bufs):
            wait = start + k / cps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not snaps and time.monotonic() - start >= args.paced_warmup:
                snaps.append({"t": time.monotonic(), "pg": pg_cpu(data_dir), "k": k,
                              "me": time.thread_time()})  # fmt: skip
            copy_buffer(conn, buf)
            conn.commit()
        snaps.append({"t": time.monotonic(), "pg": pg_cpu(data_dir), "k": len(bufs),
                      "me": time.thread_time()})  # fmt: skip
    a, b = snaps
    wall = b["t"] - a["t"]
    frames = (b["k"] - a["k"]) * n
    pg = {k: v - a["pg"].get(k, 0.0) for k, v in b["pg"].items()}
    emit(bench="ingest_paced", arm=args.arm_label, window_s=round(wall, 2),
         frames_per_s=round(frames / wall), commits_per_s=round((b["k"] - a["k"]) / wall, 2),
         frames_per_commit=n, windows_per_s=0,
         pg_cores={k: round(v / wall, 3) for k, v in sorted(pg.items())},
         pg_us_per_frame=round(pg["total"] * 1e6 / frames, 2),
         pg_backend_us_per_frame=round(pg.get("backend", 0.0) * 1e6 / frames, 2),
         writer_us_per_frame=round((b["me"] - a["me"]) * 1e6 / frames, 2),
         queue_rows_end=0, load_avg=[round(x, 2) for x in os.getloadavg()])  # fmt: skip


def _arm_stop(data_dir: Path) -> None:
    ManagedCluster(data_dir).destroy()


def paced(args: argparse.Namespace, tmp: Path) -> None:
    """This checkout vs ``--base`` (each with its own cluster, both idle but the one running),
    runs interleaved ABBA; per run one JSON line, then medians and paired ratios."""
    here = Path(__file__).resolve()
    arms = [("new", here.parents[1])]
    if args.base:
        arms.append(("base", Path(args.base).resolve()))
    if args.prebuilt or args.prebuilt_only:  # the floor on each arm's schema: pre-built COPYs, no writer
        arms += [(f"prebuilt_{n}", here.parents[1]) for n, _r in list(arms)]

    def call(root: Path, *extra: str) -> dict[str, Any]:
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = subprocess.run([sys.executable, str(here), *extra], env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"arm {root} failed: {proc.stderr[-2000:]}")
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        for x in lines[1:]:
            print(json.dumps(x, sort_keys=True), flush=True)
        return lines[0] if lines else {}

    common = ["--paced-rigs", str(args.paced_rigs), "--paced-hz", str(args.paced_hz),
              "--paced-seconds", str(args.paced_seconds), "--paced-warmup", str(args.paced_warmup),
              "--paced-window-ms", str(args.paced_window_ms), "--paced-prefill", str(args.paced_prefill),
              "--paced-batch-ms", str(args.paced_batch_ms), "--prebuilt-cps", str(args.prebuilt_cps),
              *(["--pg-stat"] if args.pg_stat else [])]  # fmt: skip
    dsns: dict[str, str] = {}
    try:
        for name, root in arms:
            if name.startswith("prebuilt"):  # runs on another arm's database
                continue
            got = call(root, "--arm-setup", str(tmp / name / "pg"), *common)
            if Path(got["code"]) != root:
                raise SystemExit(f"arm {name} imported telemetry from {got['code']}, not {root}")
            dsns[name] = got["dsn"]
        emit(bench="ingest_paced", setup=True, arms={n: str(r) for n, r in arms},
             rigs=args.paced_rigs, hz=args.paced_hz, seconds=args.paced_seconds,
             window_ms=args.paced_window_ms, rounds=args.rounds, cpus=os.cpu_count(),
             load_avg=[round(x, 2) for x in os.getloadavg()])  # fmt: skip
        runs = [a for a in arms if a[0].startswith("prebuilt") or not args.prebuilt_only]
        res: dict[str, list[dict[str, Any]]] = {n: [] for n, _r in runs}
        for rnd in range(args.rounds):
            order = runs if rnd % 2 == 0 else runs[::-1]
            for name, root in order:
                db = name.removeprefix("prebuilt_")
                r = call(root, "--arm-run", dsns[db], "--arm-data", str(tmp / db / "pg"),
                         "--arm-label", name, *common)  # fmt: skip
                r["round"] = rnd
                emit(**r)
                res[name].append(r)
        keys = ("pg_us_per_frame", "pg_backend_us_per_frame", "writer_us_per_frame")
        for name, arm_runs in res.items():
            emit(bench="ingest_paced", arm=name, **{f"median_{k}": round(statistics.median(
                x[k] for x in arm_runs), 2) for k in (*keys, "frames_per_s", "commits_per_s")})  # fmt: skip
        pairs_of = [("new", "base"), ("prebuilt_new", "prebuilt_base"), ("new", "prebuilt_new"),
                    ("base", "prebuilt_base")]  # fmt: skip
        for a_name, b_name in [(a, b) for a, b in pairs_of if a in res and b in res]:
            pairs = list(zip(res[a_name], res[b_name], strict=True))
            emit(bench="ingest_paced", paired=f"{a_name}/{b_name}",
                 ratios={k: [round(a[k] / b[k], 3) for a, b in pairs] for k in keys},
                 median_ratio={k: round(statistics.median(a[k] / b[k] for a, b in pairs), 3)
                               for k in keys},
                 load_avg=[round(x, 2) for x in os.getloadavg()])  # fmt: skip
    finally:
        for name, root in arms:
            if name.startswith("prebuilt"):
                continue
            with contextlib.suppress(SystemExit):
                call(root, "--arm-stop", str(tmp / name / "pg"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=240_000, help="pose frames per run")
    ap.add_argument("--rigs", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dsn", help="use this database (it will be migrated, pose tables truncated)")
    ap.add_argument("--layouts", action="store_true", help="also compare the pose row layouts")
    ap.add_argument("--chunks", action="store_true",
                    help="the capacity hand-over case instead: PoseChunk vs PoseBatch per chunk")
    ap.add_argument("--chunk-rigs", type=int, default=200, help="sessions in the --chunks case")
    ap.add_argument("--paced", action="store_true",
                    help="the capacity load in real time; CPU per stored frame (A/B with --base)")
    ap.add_argument("--base", help="--paced: a checkout of older code to compare with")
    ap.add_argument("--rounds", type=int, default=2, help="--paced: ABBA rounds")
    ap.add_argument("--paced-rigs", type=int, default=200)
    ap.add_argument("--paced-hz", type=float, default=120.0)
    ap.add_argument("--paced-seconds", type=float, default=6.0, help="measured window per run")
    ap.add_argument("--paced-warmup", type=float, default=2.0)
    ap.add_argument("--paced-window-ms", type=float, default=250.0,
                    help="one score window per rig this often (0: poses only)")
    ap.add_argument("--pg-stat", action="store_true", help="--paced: pg_stat_statements top 12")
    ap.add_argument("--paced-batch-ms", type=float, default=150.0,
                    help="--paced: the writers' max_batch_ms (150: ~4-5 commits/s, as in the "
                    "capacity run at 200 rigs)")
    ap.add_argument("--prebuilt", action="store_true",
                    help="--paced: add the pre-built COPY arm (the floor; use --paced-window-ms 0)")
    ap.add_argument("--prebuilt-only", action="store_true",
                    help="--paced --prebuilt: only the pre-built arms (schema A/B without writers)")
    ap.add_argument("--prebuilt-cps", type=float, default=5.0, help="its transactions per second")
    ap.add_argument("--paced-prefill", type=int, default=400_000,
                    help="--paced: pose frames loaded once at setup (index depth of a running lab)")
    ap.add_argument("--arm-setup", help=argparse.SUPPRESS)
    ap.add_argument("--arm-run", help=argparse.SUPPRESS)
    ap.add_argument("--arm-data", help=argparse.SUPPRESS)
    ap.add_argument("--arm-label", default="new", help=argparse.SUPPRESS)
    ap.add_argument("--arm-stop", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm_setup:
        return _arm_setup(Path(args.arm_setup), args.pg_stat, args.paced_prefill)
    if args.arm_stop:
        return _arm_stop(Path(args.arm_stop))

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    os.chmod(tmp, 0o755)
    cluster: ManagedCluster | None = None
    try:
        if args.dsn or args.arm_run or args.paced:
            dsn = args.dsn or ""
        else:
            cluster = ManagedCluster(tmp / "pg")
            cluster.start()
            dsn = cluster.create_database("bench")
        if args.arm_run:
            _arm_run(args.arm_run, Path(args.arm_data), args, tmp)
            return
        if args.paced:
            paced(args, tmp)
            return
        migrate(dsn)
        if args.chunks:
            chunk_case(dsn, args.frames, args.chunk_rigs, args.repeat, tmp)
            return
        batches = make_batches(args.frames, args.rigs)
        frames = sum(b.n for b in batches)
        buf = prebuilt_buffer(batches)
        # the CSV file: exactly the rows the binary COPY loads, written by the server itself
        run_copy(dsn, buf)
        csv_path = tmp / "poses.csv"
        with (
            psycopg.connect(dsn) as conn,
            csv_path.open("wb") as f,
            conn.cursor().copy(
                "COPY (SELECT time, rig_time, session_id, rig_id, seq, poses, analog, valid_mask "
                "FROM pose_frames) TO STDOUT (FORMAT csv)"
            ) as copy,
        ):
            for chunk in copy:
                f.write(chunk)
        os.chmod(csv_path, 0o644)
        emit(bench="ingest", setup=True, frames=frames, rigs=args.rigs, chunk=CHUNK,
             trackers=TRACKERS, analog=ANALOG, copy_bytes=len(buf),
             csv_bytes=csv_path.stat().st_size, cpus=os.cpu_count())  # fmt: skip
        times: dict[str, list[float]] = {"writer": [], "copy_prebuilt": [], "psql_csv": []}
        cpu: dict[str, list[float]] = {m: [] for m in times}

        def client_cpu() -> float:
            """CPU seconds of this process (all threads) and of finished children (psql)."""
            me = resource.getrusage(resource.RUSAGE_SELF)
            ch = resource.getrusage(resource.RUSAGE_CHILDREN)
            return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime

        extra: dict[str, Any] = {}
        for rep in range(args.repeat):
            order = ["writer", "copy_prebuilt", "psql_csv"]
            order = order[rep % 3 :] + order[: rep % 3]  # rotate so no method always goes first
            for method in order:
                c0 = client_cpu()
                if method == "writer":
                    el, extra = run_writer(dsn, batches, tmp / "spool")
                elif method == "copy_prebuilt":
                    el = run_copy(dsn, buf)
                else:
                    el = run_psql(dsn, csv_path)
                times[method].append(el)
                # client CPU includes the untimed reset (TRUNCATE + CHECKPOINT round trips)
                cpu[method].append(client_cpu() - c0)
                emit(bench="ingest", method=method, repeat=rep, seconds=round(el, 3),
                     rows_per_s=round(frames / el), client_cpu_s=round(cpu[method][-1], 3))  # fmt: skip
        med = {m: statistics.median(v) for m, v in times.items()}
        for m, v in med.items():
            emit(bench="ingest", method=m, median_seconds=round(v, 3),
                 rows_per_s=round(frames / v), poses_per_s=round(frames * TRACKERS / v),
                 client_cpu_us_per_row=round(statistics.median(cpu[m]) / frames * 1e6, 2),
                 **(extra if m == "writer" else {}))  # fmt: skip
        paired = [c / w for c, w in zip(times["copy_prebuilt"], times["writer"], strict=True)]
        emit(
            bench="ingest",
            # the machine is shared and noisy: also the median of the per-repeat ratios, each
            # from two runs next to each other in time
            paired_ratio_writer_vs_copy_prebuilt=round(statistics.median(paired), 3),
            paired_ratios=[round(x, 3) for x in paired],
            ratio_writer_vs_copy_prebuilt=round(med["copy_prebuilt"] / med["writer"], 3),
            ratio_psql_csv_vs_copy_prebuilt=round(med["copy_prebuilt"] / med["psql_csv"], 3),
            ratio_writer_vs_psql_csv=round(med["psql_csv"] / med["writer"], 3),
            target_writer_vs_copy=0.8,
        )
        if args.layouts:
            layouts(dsn, min(args.frames, 200_000))
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
