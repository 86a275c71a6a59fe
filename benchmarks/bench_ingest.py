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
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from telemetry import copybin
from telemetry.cluster import ManagedCluster
from telemetry.migrate import migrate
from telemetry.records import PoseBatch, PoseChunk
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


def run_copy(dsn: str, buf: bytes) -> float:
    reset(dsn)
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        with conn.cursor().copy(
            "COPY pose_frames (time, rig_time, session_id, rig_id, seq, poses, analog, valid_mask) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            mv = memoryview(buf)
            for i in range(0, len(buf), 1 << 20):
                copy.write(mv[i : i + (1 << 20)])
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
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    os.chmod(tmp, 0o755)
    cluster: ManagedCluster | None = None
    try:
        if args.dsn:
            dsn = args.dsn
        else:
            cluster = ManagedCluster(tmp / "pg")
            cluster.start()
            dsn = cluster.create_database("bench")
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
