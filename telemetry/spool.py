"""The project's one durable spool: an append-only, checksummed, segmented record log.

Used by the controller (its first durable sink), by the telemetry writer while the database is
away, and by rig agents for unacknowledged chunks beyond their memory bound. Stdlib only.

On-disk format (little-endian), one file per segment ``seg-<first id, 20 digits>.log``::

    record := magic u32 'LSP1' | payload length u32 | record id u64 | kind u16 | crc32 u32 | payload
    (the CRC-32 covers id, kind and payload)

Durability: :meth:`Spool.append` only buffers; :meth:`Spool.sync` flushes and ``fsync``\\ s the
active segment and returns the highest durable record id. Owners batch their syncs (group
commit) and acknowledge only what ``sync`` returned. Segments are fsync'd when they are sealed.

Consumption: :meth:`Spool.consume_upto` moves a pointer kept in ``consumed`` (written with
rename, not fsync'd): after a crash, records since the last persisted pointer are replayed, so
delivery is at-least-once and consumers must be idempotent (ours drop duplicates by sequence).
Fully consumed segments are deleted.

Crash recovery: a torn or corrupt record at the tail of the *last* segment (a write that never
completed, so it was never acknowledged) is truncated away and counted in
:attr:`Spool.truncated_bytes`. Corruption anywhere else raises :class:`SpoolCorruptError`, because
silently skipping acknowledged data would be loss.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_MAGIC = 0x3150534C  # b"LSP1" little-endian
_HEADER = struct.Struct("<IIQHI")
HEADER_SIZE = _HEADER.size  # 22 bytes
_CONSUMED = struct.Struct("<QI")  # pointer, crc32
_SEGMENT_PREFIX = "seg-"
_SEGMENT_SUFFIX = ".log"
# 64 MiB segments: large enough that rotation (an fsync + a new file) is rare at the
# controller's ~10 MB/s worst case, small enough that a consumed segment is freed quickly.
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
MAX_PAYLOAD = 256 * 1024 * 1024


class SpoolError(OSError):
    """Base class of spool errors."""


class SpoolFullError(SpoolError):
    """The spool's size limit or the disk is full: stop acknowledging, keep the data upstream."""


class SpoolCorruptError(SpoolError):
    """A record before the tail fails its checksum; the spool refuses to skip it silently."""


@dataclass(frozen=True)
class SpoolRecord:
    """One record: monotonically increasing `id`, an application `kind`, the `payload` bytes."""

    id: int
    kind: int
    payload: bytes


@dataclass
class _Segment:
    path: Path
    first_id: int
    last_id: int  # 0 when empty
    size: int


def _crc(record_id: int, kind: int, payload: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QH", record_id, kind)))


class Spool:
    """Append-only durable record log in `directory` (created if missing)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        if max_bytes is not None:
            # Space comes back a whole segment at a time: with a size limit, segments of at most
            # 1/8 of it let a draining spool accept data again long before it is empty.
            segment_bytes = min(segment_bytes, max(64 * 1024, max_bytes // 8))
        self.segment_bytes = segment_bytes
        self.truncated_bytes = 0
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._consumed = self._read_consumed()
        self._recover()
        last = self._segments[-1].last_id if self._segments else 0
        self._next_id = max(last, self._consumed) + 1
        self._durable_id = self._next_id - 1  # everything recovered from disk is durable
        self._fh: BinaryIO | None = None
        self._closed = False

    # ---- recovery ---------------------------------------------------------------------
    def _read_consumed(self) -> int:
        path = self.directory / "consumed"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return 0
        if len(raw) != _CONSUMED.size:
            return 0
        pointer, crc = _CONSUMED.unpack(raw)
        return int(pointer) if zlib.crc32(raw[:8]) == crc else 0

    def _segment_paths(self) -> list[tuple[int, Path]]:
        out: list[tuple[int, Path]] = []
        for p in self.directory.iterdir():
            name = p.name
            if name.startswith(_SEGMENT_PREFIX) and name.endswith(_SEGMENT_SUFFIX):
                digits = name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)]
                if digits.isdigit():
                    out.append((int(digits), p))
        return sorted(out)

    def _recover(self) -> None:
        paths = self._segment_paths()
        for index, (first_id, path) in enumerate(paths):
            is_last = index == len(paths) - 1
            last_id, good_size = self._scan(path, is_last)
            size = path.stat().st_size
            if good_size < size:
                self.truncated_bytes += size - good_size
                with path.open("r+b") as f:
                    f.truncate(good_size)
                    f.flush()
                    os.fsync(f.fileno())
            self._segments.append(_Segment(path, first_id, last_id, good_size))
        self._drop_consumed_segments()

    def _scan(self, path: Path, is_last: bool) -> tuple[int, int]:
        """(last good record id, size of the good prefix) of one segment file."""
        last_id = 0
        offset = 0
        with path.open("rb") as f:
            data = f.read()
        while offset < len(data):
            bad = None
            if len(data) - offset < HEADER_SIZE:
                bad = "torn header"
            else:
                magic, length, rid, kind, crc = _HEADER.unpack_from(data, offset)
                end = offset + HEADER_SIZE + length
                if magic != _MAGIC:
                    bad = "bad magic"
                elif end > len(data):
                    bad = "torn payload"
                elif _crc(rid, kind, memoryview(data)[offset + HEADER_SIZE : end]) != crc:
                    bad = "checksum mismatch"
            if bad is not None:
                if is_last:
                    return last_id, offset
                raise SpoolCorruptError(
                    errno.EIO, f"spool segment {path} is corrupt at byte {offset} ({bad})"
                )
            last_id = rid
            offset = end
        return last_id, offset

    # ---- writing ------------------------------------------------------------------------
    def _active(self) -> _Segment:
        if not self._segments or self._segments[-1].size >= self.segment_bytes:
            self._seal_active()
            path = self.directory / f"{_SEGMENT_PREFIX}{self._next_id:020d}{_SEGMENT_SUFFIX}"
            self._segments.append(_Segment(path, self._next_id, 0, 0))
            self._fsync_dir()
        seg = self._segments[-1]
        if self._fh is None:
            self._fh = seg.path.open("ab", buffering=1024 * 1024)
        return seg

    def _seal_active(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            if self._segments:
                self._durable_id = max(self._durable_id, self._segments[-1].last_id)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, payload: bytes | bytearray | memoryview, kind: int = 0) -> int:
        """Buffer one record and return its id; it is durable once :meth:`sync` returns >= id."""
        length = len(payload)
        if length > MAX_PAYLOAD:
            raise ValueError(f"spool record of {length} bytes exceeds {MAX_PAYLOAD}")
        if not 0 <= kind <= 0xFFFF:
            raise ValueError(f"spool record kind {kind} outside 0..65535")
        with self._lock:
            self._check_open()
            if self.max_bytes is not None and self.pending_bytes + HEADER_SIZE + length > self.max_bytes:
                raise SpoolFullError(
                    errno.ENOSPC,
                    f"spool {self.directory} is full ({self.pending_bytes} of {self.max_bytes} bytes)",
                )
            seg = self._active()
            rid = self._next_id
            header = _HEADER.pack(_MAGIC, length, rid, kind, _crc(rid, kind, payload))
            try:
                fh = self._fh
                if fh is None:  # _active() always opens it; keeps mypy and -O honest
                    raise SpoolError(errno.EBADF, "spool segment not open")
                fh.write(header)
                fh.write(payload)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise SpoolFullError(exc.errno, f"disk full under {self.directory}") from exc
                raise
            self._next_id += 1
            seg.last_id = rid
            seg.size += HEADER_SIZE + length
            return rid

    def sync(self) -> int:
        """Flush and fsync; returns the highest record id that is now durable."""
        with self._lock:
            self._check_open()
            if self._fh is not None:
                try:
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise SpoolFullError(exc.errno, f"disk full under {self.directory}") from exc
                    raise
            self._durable_id = self._next_id - 1
            return self._durable_id

    @property
    def durable_id(self) -> int:
        """Highest record id known durable (0 when none)."""
        return self._durable_id

    @property
    def last_id(self) -> int:
        """Highest record id appended so far (0 when none)."""
        return self._next_id - 1

    # ---- reading and consuming ------------------------------------------------------------
    def records(self, start_after: int | None = None) -> Iterator[SpoolRecord]:
        """Unconsumed records in id order (those appended before the call), after `start_after`."""
        with self._lock:
            self._check_open()
            if self._fh is not None:
                self._fh.flush()
            floor = max(self._consumed, start_after or 0)
            snapshot = [(s.path, s.size, s.last_id) for s in self._segments if s.last_id > floor]
        for path, size, _last in snapshot:
            try:
                with path.open("rb") as f:
                    data = f.read(size)
            except FileNotFoundError:
                continue  # consumed and deleted meanwhile
            offset = 0
            while offset + HEADER_SIZE <= len(data):
                magic, length, rid, kind, crc = _HEADER.unpack_from(data, offset)
                start = offset + HEADER_SIZE
                end = start + length
                if magic != _MAGIC or end > len(data):
                    raise SpoolCorruptError(errno.EIO, f"spool segment {path} corrupt at {offset}")
                payload = data[start:end]
                if _crc(rid, kind, payload) != crc:
                    raise SpoolCorruptError(errno.EIO, f"spool record {rid} fails its checksum")
                if rid > floor:
                    yield SpoolRecord(rid, kind, payload)
                offset = end

    def consume_upto(self, record_id: int) -> None:
        """Mark every record with id <= `record_id` consumed; deletes fully consumed segments."""
        with self._lock:
            self._check_open()
            if record_id <= self._consumed:
                return
            self._consumed = min(record_id, self._next_id - 1)
            raw = struct.pack("<Q", self._consumed)
            tmp = self.directory / "consumed.tmp"
            tmp.write_bytes(_CONSUMED.pack(self._consumed, zlib.crc32(raw)))
            os.replace(tmp, self.directory / "consumed")
            self._drop_consumed_segments()

    def _drop_consumed_segments(self) -> None:
        keep: list[_Segment] = []
        for index, seg in enumerate(self._segments):
            active = index == len(self._segments) - 1
            if seg.last_id and seg.last_id <= self._consumed:
                if active and self._fh is not None:
                    # Fully consumed active segment: close it; the next append opens a new one.
                    self._fh.close()
                    self._fh = None
                seg.path.unlink(missing_ok=True)
            else:
                keep.append(seg)
        self._segments = keep

    @property
    def consumed_id(self) -> int:
        return self._consumed

    @property
    def pending_records(self) -> int:
        """Records appended but not yet consumed."""
        return max(0, self._next_id - 1 - self._consumed)

    @property
    def pending_bytes(self) -> int:
        """Bytes on disk in segments that still hold unconsumed records."""
        return sum(s.size for s in self._segments)

    # ---- lifecycle -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(errno.EBADF, f"spool {self.directory} is closed")

    def close(self) -> None:
        """Sync and close (idempotent)."""
        with self._lock:
            if self._closed:
                return
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None
            self._durable_id = self._next_id - 1
            self._closed = True

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
