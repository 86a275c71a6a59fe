"""Durable sinks: where accepted sample chunks go before the controller acknowledges them.

The contract is `DurableSink`: `submit` a decoded chunk (may refuse with `SinkBusy` — that is the
back-pressure signal, the controller then stops reading the data socket), ask `durable()` for the
highest sequence number stored contiguously from 0 per session, `close()`. The controller sends
DATA_ACK only for what `durable()` reports, so whatever a sink does, acknowledged = stored.

`SpoolSink` is the first implementation, on the project's one spool (`telemetry.spool.Spool`):
a writer thread appends and fsyncs in groups (group commit: one fsync covers every chunk that
arrived while the previous fsync ran, plus a short linger), so the socket thread never waits
for the disk. A full spool (`SpoolFullError`) stops acknowledging and keeps the chunks queued;
nothing is dropped.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from lab_controller.controller.sequence import RangeSet
from lab_controller.protocol import (
    CHUNK_HEADER,
    MAGIC,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    ChannelLayout,
    ChunkFlags,
    ChunkHeader,
    MessageClass,
    SampleChunk,
    decode_chunk,
)
from telemetry.spool import Spool, SpoolFullError

log = logging.getLogger(__name__)

SPOOL_KIND_CHUNK = 1
"""Spool record kind of a sample chunk written by `SpoolSink` (see `encode_spool_record`)."""

# Group commit: wait at most 2 ms after the first queued chunk for more before one fsync.
# An fsync on these machines' disks takes ~1-5 ms, so batches form naturally under load and
# the added ack latency stays well below the 20 ms chunk cadence (performance.md: 10-30 ms).
DEFAULT_LINGER_S = 0.002
# ...but only when fewer chunks than this are waiting (a busy lab forms its groups by itself).
LINGER_BELOW_CHUNKS = 32
# Queue bound: 4096 chunks ≈ 16 s of 120 rigs' 20 ms chunks; beyond it submit() refuses.
DEFAULT_MAX_QUEUED_CHUNKS = 4096
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024
# Retry interval after SpoolFullError or another write error (nothing is dropped meanwhile).
RETRY_AFTER_ERROR_S = 0.5
# How often the durable-watermark sidecar is rewritten (it bounds the restart scan).
WATERMARK_EVERY_S = 0.5

_RECORD_PREFIX = struct.Struct("<HHI")  # n_trackers, n_analog, len(frame0)
_MASK_BIT = int(ChunkFlags.MASK)


def session_key(header: ChunkHeader) -> bytes:
    """The session UUID's 16 raw bytes of a chunk header, without building a UUID."""
    raw = getattr(header, "session", None)  # the codec keeps the raw bytes when it can
    return raw if isinstance(raw, bytes) else header.session_id.bytes


class _SessionText:
    """Raw session bytes → UUID text, cached (per sink; bounded)."""

    def __init__(self) -> None:
        self._cache: dict[bytes, str] = {}

    def __call__(self, header: ChunkHeader) -> str:
        key = session_key(header)
        text = self._cache.get(key)
        if text is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            text = self._cache[key] = str(uuid.UUID(bytes=key))
        return text


class SinkBusy(Exception):
    """The sink cannot take the chunk now; keep it and retry (back-pressure, never a drop)."""


@runtime_checkable
class DurableSink(Protocol):
    """Where accepted chunks become durable. Implementations must be thread-safe for `durable`."""

    def submit(self, chunk: SampleChunk) -> None:
        """Take ownership of `chunk` for storage; raise `SinkBusy` to push back."""

    def durable(self) -> Mapping[str, int]:
        """Per session id (str UUID): highest seq stored contiguously from 0 (-1 none)."""

    def close(self) -> None:
        """Store what was submitted, then release resources."""


def encode_spool_record(chunk: SampleChunk) -> bytes:
    """A chunk as one spool record: a small prefix plus the protocol's own two frames."""
    h = chunk.header
    n, t = chunk.valid.shape
    a = chunk.analog.shape[1]
    flags = int(h.flags) & ~_MASK_BIT
    mask = b""
    # A chunk without the MASK flag has every tracker valid (the decoder guarantees it), so
    # the mask is only recomputed for masked chunks (and for slices of them).
    if int(h.flags) & _MASK_BIT and not chunk.valid.all():
        flags |= _MASK_BIT
        mask = np.packbits(chunk.valid, axis=1, bitorder="little").tobytes()
    frame0 = CHUNK_HEADER.pack(
        MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR, MessageClass.CHUNK, 0,
        h.rig_handle, h.layout_id, session_key(h), h.first_seq, n, flags,
        h.rig_time_first, h.period,
    ) + mask
    nbytes = 4 * n * (t * 7 + a)
    base = chunk.poses.base
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, bytes) and len(base) == nbytes:
        body = base  # the received frame itself: poses and analog are views of it
    else:
        body = np.ascontiguousarray(chunk.poses, dtype="<f4").tobytes()
        if a:
            body += np.ascontiguousarray(chunk.analog, dtype="<f4").tobytes()
    return b"".join((_RECORD_PREFIX.pack(t, a, len(frame0)), frame0, body))


def decode_spool_record(payload: bytes) -> SampleChunk:
    """Inverse of `encode_spool_record` (for the telemetry writer draining the spool)."""
    t, a, n0 = _RECORD_PREFIX.unpack_from(payload, 0)
    start = _RECORD_PREFIX.size
    frame0 = payload[start : start + n0]
    frame1 = payload[start + n0 :]
    (layout_id,) = struct.unpack_from("<I", frame0, 12)
    layout = ChannelLayout(
        trackers=tuple(f"t{i}" for i in range(t)),
        roles=("other",) * t,
        analog=tuple(f"a{i}" for i in range(a)),
        layout_id=layout_id,
    )
    return decode_chunk([frame0, frame1], layout)


class _Durability:
    """Per-session durable ranges (thread-safe), shared by sinks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ranges: dict[str, RangeSet] = {}
        self._upto: dict[str, int] = {}

    def mark(self, items: list[tuple[str, int, int]]) -> None:
        with self._lock:
            for sid, first, count in items:
                rs = self._ranges.get(sid)
                if rs is None:
                    rs = self._ranges[sid] = RangeSet()
                r = rs.ranges
                if len(r) == 1 and r[0][0] == 0 and r[0][1] == first:
                    r[0] = (0, first + count)  # contiguous append: the common case
                    self._upto[sid] = first + count - 1
                    continue
                rs.add(first, first + count)
                self._upto[sid] = rs.contiguous_end(0) - 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._upto)

    def ranges(self) -> dict[str, list[tuple[int, int]]]:
        with self._lock:
            return {k: list(v.ranges) for k, v in self._ranges.items()}


class MemorySink:
    """Everything is 'durable' at once, kept in memory. For tests and dry runs only."""

    def __init__(self) -> None:
        self.chunks: list[SampleChunk] = []
        self._d = _Durability()
        self._text = _SessionText()
        self.busy = False  # tests flip this to exercise back-pressure

    def submit(self, chunk: SampleChunk) -> None:
        if self.busy:
            raise SinkBusy("memory sink set busy")
        self.chunks.append(chunk)
        self._d.mark([(self._text(chunk.header), chunk.first_seq, chunk.count)])

    def durable(self) -> Mapping[str, int]:
        return self._d.snapshot()

    def close(self) -> None:
        return None


class SpoolSink:
    """Chunks → `telemetry.spool.Spool`, group-committed by a writer thread."""

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bytes: int | None = None,
        segment_bytes: int | None = None,
        linger_s: float = DEFAULT_LINGER_S,
        max_queued_chunks: int = DEFAULT_MAX_QUEUED_CHUNKS,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        if segment_bytes is None:
            self.spool = Spool(self.directory, max_bytes=max_bytes)
        else:
            self.spool = Spool(self.directory, max_bytes=max_bytes, segment_bytes=segment_bytes)
        self._linger_s = linger_s
        self._max_chunks = max_queued_chunks
        self._max_bytes = max_queued_bytes
        self._on_durable = on_durable
        # Hand-off without a wake-up per chunk: submit() appends under a lock and only the
        # first chunk of a batch sets the event (a per-chunk queue.put + thread wake-up cost
        # ~20 µs of GIL ping-pong per chunk when measured; a batch costs that once).
        self._pending: list[tuple[str, int, int, bytes]] = []
        self._has_work = threading.Event()
        self._queued_chunks = 0
        self._queued_bytes = 0
        self._qlock = threading.Lock()
        self._d = _Durability()
        self._text = _SessionText()
        self._watermark_path = self.directory / "sink-durable.json"
        self._watermark_id = 0
        self._recover()
        self.commits = 0
        self.committed_chunks = 0
        self.last_error: str = ""
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="spool-sink", daemon=True)
        self._thread.start()

    def set_listener(self, on_durable: Callable[[], None]) -> None:
        """Call `on_durable()` (from the writer thread) after each group commit."""
        self._on_durable = on_durable

    # ---- recovery -------------------------------------------------------------------------
    def _recover(self) -> None:
        """Rebuild durable ranges: the sidecar, then spool records written after it."""
        start_after = 0
        try:
            data = json.loads(self._watermark_path.read_text())
            start_after = int(data["spool_id"])
            items = [
                (sid, int(s), int(e) - int(s))
                for sid, ranges in data["sessions"].items()
                for s, e in ranges
            ]
            self._d.mark(items)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s (%s); rescanning the spool", self._watermark_path,
                        exc)
            start_after = 0
        items = []
        for rec in self.spool.records(start_after=start_after or None):
            if rec.kind != SPOOL_KIND_CHUNK:
                continue
            sid, first, count = _record_seq(rec.payload)
            items.append((sid, first, count))
        self._d.mark(items)
        self._watermark_id = self.spool.last_id

    # ---- DurableSink ----------------------------------------------------------------------
    def submit(self, chunk: SampleChunk) -> None:
        """Queue `chunk` for the writer thread; `SinkBusy` when the bounded queue is full."""
        if self._closed:
            raise SinkBusy("sink closed")
        payload = encode_spool_record(chunk)
        with self._qlock:
            if self._queued_chunks >= self._max_chunks or (
                self._queued_bytes + len(payload) > self._max_bytes and self._queued_chunks
            ):
                raise SinkBusy(f"{self._queued_chunks} chunks queued for the spool")
            self._queued_chunks += 1
            self._queued_bytes += len(payload)
            self._pending.append((self._text(chunk.header), chunk.first_seq, chunk.count,
                                  payload))
            first = len(self._pending) == 1
        if first:
            self._has_work.set()

    def durable(self) -> Mapping[str, int]:
        return self._d.snapshot()

    def close(self) -> None:
        """Commit everything queued, write the sidecar, close the spool."""
        if self._closed:
            return
        self._closed = True
        self._has_work.set()
        self._thread.join(timeout=30)
        self._write_watermark(force=True)
        self.spool.close()

    @property
    def queued_chunks(self) -> int:
        return self._queued_chunks

    def stats(self) -> dict[str, object]:
        """Counters for status."""
        return {
            "queued_chunks": self._queued_chunks,
            "queued_bytes": self._queued_bytes,
            "commits": self.commits,
            "committed_chunks": self.committed_chunks,
            "spool_pending_bytes": self.spool.pending_bytes,
            "last_error": self.last_error,
        }

    # ---- writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        last_mark = time.monotonic()
        while True:
            self._has_work.wait(WATERMARK_EVERY_S)
            closing = self._closed
            with self._qlock:
                few = len(self._pending) < LINGER_BELOW_CHUNKS
            if few and self._has_work.is_set() and not closing:
                # Let a group form: one fsync for all of it. Under load the group forms by
                # itself while the previous fsync runs, so no extra wait is added then.
                time.sleep(self._linger_s)
            with self._qlock:
                batch, self._pending = self._pending, []
                self._has_work.clear()
            if batch:
                self._commit(batch)
            if time.monotonic() - last_mark >= WATERMARK_EVERY_S:
                self._write_watermark()
                last_mark = time.monotonic()
            if closing:
                with self._qlock:
                    batch, self._pending = self._pending, []
                if batch:
                    self._commit(batch)
                return

    def _commit(self, batch: list[tuple[str, int, int, bytes]]) -> None:
        """Append + fsync `batch`; on error keep retrying (acks stop, data stays)."""
        done = 0
        while True:
            try:
                for sid, first, count, payload in batch[done:]:
                    del sid, first, count
                    self.spool.append(payload, SPOOL_KIND_CHUNK)
                    done += 1
                self.spool.sync()
                break
            except SpoolFullError as exc:
                self._fail(f"spool full: {exc}")
            except OSError as exc:
                self._fail(f"spool write failed: {exc}")
            if self._closed:
                log.error("sink closed with %d chunks not stored (not acknowledged either)",
                          len(batch) - done)
                return
        self.last_error = ""
        self._d.mark([(sid, first, count) for sid, first, count, _ in batch])
        with self._qlock:
            self._queued_chunks -= len(batch)
            self._queued_bytes -= sum(len(p) for *_, p in batch)
        self.commits += 1
        self.committed_chunks += len(batch)
        cb = self._on_durable
        if cb is not None:
            try:
                cb()
            except Exception:
                log.exception("on_durable listener failed")

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.error("%s; acknowledgements stop until it clears, nothing is dropped", message)
        self.last_error = message
        time.sleep(RETRY_AFTER_ERROR_S)

    def _write_watermark(self, force: bool = False) -> None:
        last = self.spool.durable_id
        if not force and last == self._watermark_id:
            return
        data = {"spool_id": last, "sessions": self._d.ranges()}
        tmp = self._watermark_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self._watermark_path)
            self._watermark_id = last
        except OSError as exc:
            log.warning("cannot write %s: %s", self._watermark_path, exc)


def _record_seq(payload: bytes) -> tuple[str, int, int]:
    """(session id, first_seq, count) of a spooled chunk without decoding its samples."""
    off = _RECORD_PREFIX.size
    (sid,) = struct.unpack_from("<16s", payload, off + 16)
    first, count = struct.unpack_from("<QI", payload, off + 32)
    return str(uuid.UUID(bytes=sid)), int(first), int(count)
