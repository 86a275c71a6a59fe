"""The telemetry writer: the controller's durable sink for samples, scores, cues and events.

One background thread owns one database connection. Callers :meth:`TelemetryWriter.submit`
records (layouts in :mod:`telemetry.records`) into a queue bounded by rows; a full queue blocks
the caller (back-pressure, never unbounded memory). The thread takes up to ``max_batch_rows``
rows or whatever arrived within ``max_batch_ms`` and stores them in one transaction
(:class:`telemetry.store.Store`: binary COPY built with numpy, resent sequence numbers filtered
out). After each durable step it reports, per session, the highest sequence number ``k`` such
that every pose frame ``0..k`` is durable (in the database or fsync'd in the spool).

Outages: when the database is unreachable, a statement exceeds ``statement_timeout_ms``, or the
connection breaks mid-transaction, the batch goes to the project's spool
(:class:`telemetry.spool.Spool`), one fsync per batch (group commit) before acknowledging.
While the spool holds records every new batch is appended behind them, so data reaches the
database in arrival order; the thread reconnects every ``retry_interval_s`` and drains the spool
in transactions of about ``max_batch_rows`` rows, consuming records only after their commit.
A spool left behind by a previous process is drained the same way after a restart. If the spool
cannot take a batch (its size limit or the disk is full) the writer turns ``stalled``: it keeps
the batch in memory, stops acknowledging, and the queue fills so ``submit`` blocks — the rigs
keep their unacknowledged data; nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg

from telemetry import records as rec
from telemetry.ranges import RangeSet
from telemetry.records import OpsMetric, PoseBatch, PoseChunk, Record, ScoreWindowBatch
from telemetry.schema import (
    METRIC_INGEST_LAG_MS,
    METRIC_QUEUE_DEPTH,
    METRIC_ROWS_WRITTEN,
    METRIC_SPOOL_BYTES,
    METRIC_SPOOL_RECORDS,
)
from telemetry.spool import DEFAULT_SEGMENT_BYTES, Spool, SpoolFullError, SpoolRecord
from telemetry.store import POSE_STREAM, SCORE_STREAM, Store, WriteOutcome

log = logging.getLogger(__name__)

AckCallback = Callable[[dict[uuid.UUID, int]], None]


class WriterError(RuntimeError):
    """The writer cannot accept records (closed, or failed)."""


class WriterState(StrEnum):
    """Where batches go right now."""

    STARTING = "starting"
    DATABASE = "database"  # connected, spool empty: straight to the database
    SPOOLING = "spooling"  # database away or spool not yet drained: to the spool
    STALLED = "stalled"  # spool full or unwritable: nothing acknowledged until it clears
    CLOSED = "closed"


@dataclass(frozen=True)
class WriterConfig:
    """Tuning of one writer. The defaults carry their reasons."""

    site_id: str
    spool_dir: Path
    spool_max_bytes: int | None = None
    # 20k frames ≈ 40 rigs × 120 Hz × 4 s, or ~9 MB of COPY data: large enough that the
    # per-transaction cost (commit fsync, ranges upsert) is < 1% of the COPY time measured in
    # benchmarks/bench_ingest.py, small enough that a failed transaction is cheap to spool.
    max_batch_rows: int = 20_000
    # Rigs send 10–30 ms chunks (performance.md); 50 ms more keeps acks well under the rigs'
    # resend timers while still batching several chunks per rig into one COPY.
    max_batch_ms: float = 50.0
    # ~2.5 s of a 300-rig hall (36k frames/s) before submit() blocks.
    queue_max_rows: int = 100_000
    connect_timeout_s: float = 2.0
    retry_interval_s: float = 0.5
    # A statement stuck this long is treated as an outage (spool and reconnect).
    statement_timeout_ms: int = 10_000
    metrics_interval_s: float = 5.0
    # Send batches to the spool when the queue is this full (the database keeps up no more);
    # None: block the producers instead (back-pressure only).
    spill_at_queue_fraction: float | None = None


@dataclass
class WriterStats:
    """Counters since start (read with :meth:`TelemetryWriter.stats`)."""

    state: WriterState = WriterState.STARTING
    error: str | None = None
    rows_written: int = 0  # pose frames committed to the database
    rows_deduplicated: int = 0  # pose frames dropped because already stored
    score_windows_written: int = 0
    other_rows_written: int = 0
    transactions: int = 0
    spooled_records: int = 0
    drained_records: int = 0
    rejected_records: int = 0
    outages: int = 0
    queue_rows: int = 0
    spool_pending_records: int = 0
    spool_pending_bytes: int = 0
    last_ingest_lag_ms: float | None = None


_OUTAGE = (psycopg.OperationalError, psycopg.InterfaceError)
_MALFORMED = (ValueError, TypeError, IndexError)
"""What encoding a malformed record raises (PoseChunk is not validated on the caller's thread):
treated like a data error, so the record is isolated into ingest_rejects."""


class TelemetryWriter:
    """Durable sink: database when reachable, spool otherwise; acknowledges what is durable."""

    def __init__(self, dsn: str, config: WriterConfig, *, on_ack: AckCallback | None = None) -> None:
        self.dsn = dsn
        self.config = config
        self._on_ack = on_ack
        self._store = Store(config.site_id)
        seg = DEFAULT_SEGMENT_BYTES
        if config.spool_max_bytes is not None:
            # The spool frees space a whole segment at a time: with a size limit, segments of
            # 1/8 of it let a drained spool accept data again long before it is empty.
            seg = max(64 * 1024, min(seg, config.spool_max_bytes // 8))
        self._spool = Spool(config.spool_dir, max_bytes=config.spool_max_bytes, segment_bytes=seg)
        self._queue: deque[tuple[Record, int]] = deque()  # (record, rows)
        self._queue_rows = 0
        self._max_queue_rows = config.queue_max_rows
        self._max_batch_rows = config.max_batch_rows
        self._qlock = threading.Lock()
        self._qcond = threading.Condition(self._qlock)
        self._submitted = 0  # records submitted / stored (database or spool); under _qcond
        self._done = 0
        self._held: list[Record] = []
        self._internal: list[Record] = []
        self._conn: psycopg.Connection[Any] | None = None
        self._next_connect = 0.0
        self._durable: dict[tuple[str, uuid.UUID], RangeSet] = {}
        self._acked: dict[uuid.UUID, int] = {}
        self._ack_lock = threading.Lock()
        self._stats = WriterStats()
        self._stop = False
        self._failed = False
        self._forget: set[uuid.UUID] = set()
        self._thread: threading.Thread | None = None
        self._drain_iter: Iterator[SpoolRecord] | None = None
        self._next_metrics = 0.0
        self._recover_spooled_ranges()

    # ---- public API ---------------------------------------------------------------------
    def start(self) -> TelemetryWriter:
        """Start the writer thread (returns self)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> TelemetryWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, record: Record, timeout: float | None = None) -> None:
        """Queue one record; blocks while the queue is full (back-pressure).

        Raises :class:`TimeoutError` if still full after ``timeout`` seconds and
        :class:`WriterError` once the writer is closed.
        """
        # PoseChunk (~10k/s from the controller loop) skips the generic dispatch; the whole call
        # is one lock round and a deque append when the queue has room.
        rows = record.n if type(record) is PoseChunk else rec.rows_of(record)
        max_rows = self._max_queue_rows
        with self._qlock:  # the condition's own lock, without its Python-level __enter__
            queued = self._queue_rows
            if self._stop or self._failed or (queued and queued + rows > max_rows):
                self._wait_for_room(rows, timeout)
                queued = self._queue_rows
            self._queue.append((record, rows))
            queued += rows
            self._queue_rows = queued
            self._submitted += 1
            # Wake the thread only when it has something to decide: the first record (it may be
            # idle) or a full batch (it may be waiting out max_batch_ms). Waking it on every
            # submit cost a thread switch per chunk.
            if len(self._queue) == 1 or queued >= self._max_batch_rows:
                self._qcond.notify_all()

    def _wait_for_room(self, rows: int, timeout: float | None) -> None:
        """Block (under ``_qcond``) until the queue takes ``rows`` more; raise if it cannot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._stop:
                raise WriterError("telemetry writer is closed")
            if self._failed:
                raise WriterError(f"telemetry writer failed: {self._stats.error}")
            if self._queue_rows == 0 or self._queue_rows + rows <= self._max_queue_rows:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("telemetry writer queue is full")
            self._qcond.wait(remaining)

    def acked(self, session_id: uuid.UUID) -> int:
        """Highest k with pose frames 0..k of the session durable; -1 if none."""
        with self._ack_lock:
            return self._acked.get(session_id, -1)

    def durable_ranges(self, session_id: uuid.UUID, stream: str = POSE_STREAM) -> RangeSet:
        """Every durable seq range of a session known to this writer (database or spool)."""
        with self._ack_lock:
            rs = self._durable.get((stream, session_id))
            return rs.copy() if rs is not None else RangeSet()

    def forget_session(self, session_id: uuid.UUID) -> None:
        """Drop a finished session's bookkeeping from memory (a long-running controller sees
        thousands of sessions). Safe at any time: a late resend reloads the stored ranges from
        the database, so it still stores nothing twice."""
        with self._ack_lock:
            self._acked.pop(session_id, None)
            for stream in (POSE_STREAM, SCORE_STREAM):
                self._durable.pop((stream, session_id), None)
        with self._qcond:
            self._forget.add(session_id)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is durable (database or spool)."""
        with self._qcond:
            target = self._submitted
            return self._qcond.wait_for(lambda: self._done >= target, timeout)

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted is in the database and the spool is empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if (
                self.flush(0)
                and self._spool.pending_records == 0
                and not self._held
                and self._queue_rows == 0
            ):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def stats(self) -> WriterStats:
        """A copy of the counters."""
        s = WriterStats(**vars(self._stats))
        s.queue_rows = self._queue_rows
        s.spool_pending_records = self._spool.pending_records
        s.spool_pending_bytes = self._spool.pending_bytes
        return s

    @property
    def state(self) -> WriterState:
        return self._stats.state

    def close(self, timeout: float | None = 30.0) -> None:
        """Store what is queued (database or spool), stop the thread, close spool and connection."""
        with self._qcond:
            self._stop = True
            self._qcond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._spool.close()
        self._stats.state = WriterState.CLOSED

    # ---- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                items = self._take_batch()
                if items is None:
                    break
                if self._held:
                    items = self._held + items
                    self._held = []
                if self._forget:
                    with self._qcond:
                        forget, self._forget = self._forget, set()
                    self._store.forget(forget)
                self._maybe_emit_metrics()
                if self._internal:
                    items = items + self._internal
                    self._internal = []
                if items:
                    self._store_items(items)
                elif self._conn is None:
                    self._connect()
                if self._conn is not None and self._spool.pending_records:
                    self._drain_step()
            # closing: whatever is still held goes to the database or the spool once more
            if self._held:
                self._store_items(self._held)
        except Exception as exc:  # never die silently: record, stop acknowledging, refuse input
            log.exception("telemetry writer thread failed")
            self._stats.error = f"{type(exc).__name__}: {exc}"
            self._stats.state = WriterState.STALLED
            with self._qcond:
                self._failed = True
                self._qcond.notify_all()

    def _take_batch(self) -> list[Record] | None:
        """Up to max_batch_rows rows, waiting at most max_batch_ms after the first; None = stop."""
        cfg = self.config
        busy = bool(self._held) or (self._spool.pending_records > 0 and self._conn is not None)
        with self._qcond:
            if self._held:
                # Stalled on a batch nobody could take: take nothing more, so the queue fills
                # and submit() blocks (back-pressure up to the rigs). Closing: one last try
                # after the loop; what still fails was never acknowledged (the rigs keep it).
                if self._stop:
                    return None
                self._qcond.wait(0.02)
                return []
            if not self._queue:
                if self._stop:
                    return None
                # Busy (spool to drain, batch held): only a glance at the queue. Idle: sleep
                # until data arrives or it is time to probe the database again.
                self._qcond.wait(0.001 if busy else cfg.retry_interval_s)
                if not self._queue:
                    return None if self._stop else []
            first = time.monotonic()
            while self._queue_rows < cfg.max_batch_rows and not self._stop:
                remaining = first + cfg.max_batch_ms / 1000.0 - time.monotonic()
                if remaining <= 0:
                    break
                self._qcond.wait(remaining)
            out: list[Record] = []
            rows = 0
            while self._queue and (rows < cfg.max_batch_rows or not out):
                record, n = self._queue.popleft()
                out.append(record)
                rows += n
                self._queue_rows -= n
            self._qcond.notify_all()
            return out

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._next_connect:
            return False
        self._next_connect = now + self.config.retry_interval_s
        try:
            conn = psycopg.connect(
                self.dsn,
                connect_timeout=max(1, round(self.config.connect_timeout_s)),
                options=f"-c statement_timeout={self.config.statement_timeout_ms}",
                application_name=f"labctl-writer-{self.config.site_id}",
            )
        except _OUTAGE as exc:
            log.debug("telemetry database not reachable: %s", exc)
            if self._stats.state not in (WriterState.STALLED,):
                self._stats.state = WriterState.SPOOLING
            return False
        self._conn = conn
        self._store.reset()
        self._drain_iter = None
        log.info("telemetry writer connected")
        if self._stats.state is not WriterState.STALLED:
            self._stats.state = WriterState.SPOOLING if self._spool.pending_records else WriterState.DATABASE
        return True

    def _disconnect(self, exc: BaseException) -> None:
        log.warning("telemetry database lost (%s); spooling", exc)
        self._stats.outages += 1
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        self._store.reset()
        self._drain_iter = None
        self._next_connect = time.monotonic() + self.config.retry_interval_s
        if self._stats.state is not WriterState.STALLED:
            self._stats.state = WriterState.SPOOLING

    def _spilling(self) -> bool:
        frac = self.config.spill_at_queue_fraction
        return frac is not None and self._queue_rows >= frac * self.config.queue_max_rows

    def _store_items(self, items: list[Record]) -> None:
        if self._conn is None:
            self._connect()
        if self._conn is not None and self._spool.pending_records == 0 and not self._spilling():
            try:
                self._write_db(items, from_spool=False)
                self._stats.state = WriterState.DATABASE
                self._stats.error = None
                self._finish(items)
                return
            except _OUTAGE as exc:
                self._disconnect(exc)
        self._write_spool(items)

    def _write_db(self, items: list[Record], *, from_spool: bool) -> None:
        """One transaction; data errors isolate the bad record into ingest_rejects."""
        conn = self._conn
        assert conn is not None  # callers check
        try:
            with conn.transaction():
                outcome = self._store.write(conn, items)
        except _OUTAGE:
            raise
        except (psycopg.Error, *_MALFORMED) as exc:
            self._store.reset()
            if len(items) == 1:
                self._reject(items[0], exc)
                return
            for item in items:  # find the bad one(s); the good ones are stored
                self._write_db([item], from_spool=from_spool)
            return
        self._store.commit(outcome)
        self._adopt(outcome)

    def _reject(self, item: Record, exc: BaseException) -> None:
        conn = self._conn
        assert conn is not None
        log.error("telemetry record rejected: %s", exc)
        try:
            payload = item.to_bytes()
        except _MALFORMED:  # too malformed to encode: keep what identifies it
            payload = repr(item).encode()
        error = str(exc) if isinstance(exc, psycopg.Error) else f"{type(exc).__name__}: {exc}"
        with conn.transaction():
            conn.execute(
                "INSERT INTO ingest_rejects (kind, error, payload) VALUES (%s, %s, %s)",
                (int(rec.kind_of(item)), error, payload),
            )
        self._stats.rejected_records += 1

    def _adopt(self, outcome: WriteOutcome) -> None:
        st = self._stats
        st.transactions += 1
        st.rows_written += outcome.pose_rows
        st.rows_deduplicated += outcome.pose_dropped
        st.score_windows_written += outcome.score_rows
        st.other_rows_written += outcome.other_rows
        if outcome.max_pose_time_us is not None:
            st.last_ingest_lag_ms = time.time() * 1e3 - outcome.max_pose_time_us / 1e3
        touched: list[uuid.UUID] = []
        with self._ack_lock:
            for key, rs in outcome.ranges.items():
                cur = self._durable.setdefault(key, RangeSet())
                for lo, hi in rs.intervals:
                    cur.add(lo, hi)
                if key[0] == POSE_STREAM:
                    touched.append(key[1])
        self._report(touched)

    def _write_spool(self, items: list[Record]) -> None:
        try:
            for item in items:
                self._spool.append(item.to_bytes(), int(rec.kind_of(item)))
            self._spool.sync()
        except (SpoolFullError, OSError) as exc:
            if self._stats.state is not WriterState.STALLED:
                log.error("telemetry spool cannot take data (%s): acknowledgements stop", exc)
            self._stats.state = WriterState.STALLED
            self._stats.error = f"spool full or unwritable: {exc}"
            self._held = items
            time.sleep(min(0.2, self.config.retry_interval_s))
            return
        if self._stats.state is WriterState.STALLED:
            self._stats.error = None
        self._stats.state = WriterState.SPOOLING
        self._stats.spooled_records += len(items)
        touched: list[uuid.UUID] = []
        with self._ack_lock:
            for item in items:
                self._mark_durable(item, touched)
        self._report(touched)
        self._finish(items)

    def _mark_durable(self, item: Record, touched: list[uuid.UUID]) -> None:
        if isinstance(item, PoseChunk | PoseBatch):
            rs = self._durable.setdefault((POSE_STREAM, item.session_id), RangeSet())
            rs.add(item.seq0, item.seq0 + item.n - 1)
            touched.append(item.session_id)
        elif isinstance(item, ScoreWindowBatch):
            rs = self._durable.setdefault((SCORE_STREAM, item.session_id), RangeSet())
            rs.add_seqs(sorted_unique(item.window_idx))

    def _finish(self, items: list[Record]) -> None:
        external = sum(1 for i in items if not _is_internal(i))
        with self._qcond:
            self._done += external
            self._qcond.notify_all()

    def _report(self, sessions: list[uuid.UUID]) -> None:
        changed: dict[uuid.UUID, int] = {}
        with self._ack_lock:
            for s in set(sessions):
                rs = self._durable.get((POSE_STREAM, s))
                upto = rs.contiguous_upto(0) if rs is not None else -1
                if upto > self._acked.get(s, -1):
                    self._acked[s] = upto
                    changed[s] = upto
        if changed and self._on_ack is not None:
            try:
                self._on_ack(changed)
            except Exception:
                log.exception("telemetry ack callback failed")

    def _drain_step(self) -> None:
        """Move about max_batch_rows rows from the spool into the database (one transaction)."""
        if self._drain_iter is None:
            self._drain_iter = self._spool.records()
        batch: list[Record] = []
        last_id = 0
        rows = 0
        for r in self._drain_iter:
            last_id = r.id
            try:
                item = rec.decode(r.kind, r.payload)
            except ValueError as exc:  # an unknown kind: logged, never blocks the drain
                log.error("spool record %d undecodable: %s", r.id, exc)
                continue
            batch.append(item)
            rows += rec.rows_of(item)
            if rows >= self.config.max_batch_rows:
                break
        else:
            self._drain_iter = None  # exhausted: the next step starts a fresh pass
        if last_id == 0:
            return
        try:
            self._write_db(batch, from_spool=True)
        except _OUTAGE as exc:
            self._disconnect(exc)
            return
        self._spool.consume_upto(last_id)
        self._stats.drained_records += len(batch)
        if self._spool.pending_records == 0 and self._stats.state is WriterState.SPOOLING:
            self._stats.state = WriterState.DATABASE
            log.info("telemetry spool drained")

    def _recover_spooled_ranges(self) -> None:
        """Count what a previous process spooled as durable (so acks can be given at once)."""
        pending = self._spool.pending_records
        if not pending:
            return
        touched: list[uuid.UUID] = []
        for r in self._spool.records():
            if r.kind in (rec.Kind.POSE, rec.Kind.POSE_CHUNK, rec.Kind.SCORE):
                item = rec.decode(r.kind, r.payload)
                self._mark_durable(item, touched)
        self._report(touched)
        self._stats.state = WriterState.SPOOLING
        log.info("telemetry spool holds %d records from before; will drain", pending)

    def _maybe_emit_metrics(self) -> None:
        now = time.monotonic()
        if now < self._next_metrics:
            return
        self._next_metrics = now + self.config.metrics_interval_s
        t_us = time.time_ns() // 1000
        st = self.stats()
        values: list[tuple[str, float]] = [
            (METRIC_QUEUE_DEPTH, float(st.queue_rows)),
            (METRIC_SPOOL_RECORDS, float(st.spool_pending_records)),
            (METRIC_SPOOL_BYTES, float(st.spool_pending_bytes)),
            (METRIC_ROWS_WRITTEN, float(st.rows_written)),
        ]
        if st.last_ingest_lag_ms is not None:
            values.append((METRIC_INGEST_LAG_MS, st.last_ingest_lag_ms))
        self._internal.extend(_InternalMetric(t_us, "writer", n, v) for n, v in values)


@dataclass(frozen=True)
class _InternalMetric(OpsMetric):
    """The writer's own metrics (not counted as submitted records)."""


def _is_internal(item: Record) -> bool:
    return isinstance(item, _InternalMetric)


def sorted_unique(a: Any) -> Any:
    """Sorted distinct int64 values of an array (for range bookkeeping)."""
    import numpy as np

    return np.unique(np.asarray(a, dtype=np.int64))
