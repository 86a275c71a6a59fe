"""Writing records into the database inside the caller's transaction, exactly once.

:class:`Store` keeps, per (stream, session), the set of sequence numbers already committed
(:class:`~telemetry.ranges.RangeSet`), loaded lazily from ``ingest_ranges`` and written back to
it in the same transaction as the rows. Rows whose seq is already stored are filtered out with
numpy before encoding, so a resent chunk stores nothing, and no unique index is needed on
``pose_frames``. The caller commits and then calls :meth:`Store.commit`; on any failure it calls
:meth:`Store.reset` (the transaction's outcome is unknown, so the cache is reloaded).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.json import Jsonb

from telemetry import copybin
from telemetry.copybin import Column
from telemetry.ranges import RangeSet
from telemetry.records import (
    Cue,
    OpsMetric,
    PoseBatch,
    PoseChunk,
    Record,
    ScoreWindowBatch,
    SessionEvent,
    SessionRecord,
    SessionResult,
    valid_bits,
)

POSE_STREAM = "pose"
ENCODE_ROWS = 4096
"""Frames encoded per slice of a COPY: ~1.9 MB, large enough that numpy's per-call overhead is
negligible, small enough that encoding overlaps the server's parsing of the previous slice."""
FIRST_SLICE_ROWS = 512
"""The first slice of each COPY: ~1 ms to encode, so the server is not idle between
transactions while a whole 4k-row slice is built."""
SCORE_STREAM = "score"

Conn = psycopg.Connection[Any]
_GroupKey = tuple[bool, int, int, int]
"""(PoseChunk group?, rig id bytes, trackers, analog channels)."""
_Member = tuple[PoseBatch | PoseChunk, npt.NDArray[np.intp] | None, int]
"""A pose record, the indices of its frames still to store (None = all), its session's int."""


@dataclass
class WriteOutcome:
    """What one :meth:`Store.write` stored (applied to the cache only after commit)."""

    ranges: dict[tuple[str, uuid.UUID], RangeSet] = field(default_factory=dict)
    pose_rows: int = 0
    pose_dropped: int = 0
    score_rows: int = 0
    other_rows: int = 0
    max_pose_time_us: int | None = None


def pose_columns(rig_bytes: int, trackers: int, analog: int) -> list[Column]:
    return [
        Column("time", "timestamptz"),
        Column("rig_time", "float8"),
        Column("session_id", "uuid"),
        Column("rig_id", "bytes", size=rig_bytes),
        Column("seq", "int8"),
        Column("poses", "float4_array", shape=(trackers, 7)),
        Column("analog", "float4_array", shape=(analog,)),
        Column("valid_mask", "int4"),
    ]


def score_columns(site_bytes: int, rig_bytes: int) -> list[Column]:
    return [
        Column("time", "timestamptz"),
        Column("site_id", "bytes", size=site_bytes),
        Column("session_id", "uuid"),
        Column("rig_id", "bytes", size=rig_bytes),
        Column("window_idx", "int4"),
        Column("seq_hi", "int8"),
        Column("progress", "float4"),
        Column("alignment_distance", "float4"),
        Column("window_score", "float4"),
    ]


def param_columns(param_bytes: int) -> list[Column]:
    return [
        Column("time", "timestamptz"),
        Column("session_id", "uuid"),
        Column("window_idx", "int4"),
        Column("param", "bytes", size=param_bytes),
        *[Column(c, "float4") for c in ("mean", "std", "frac_in_window", "ideal", "lo", "hi")],
    ]


_SCORE_COPY = (
    "COPY score_windows (time, site_id, session_id, rig_id, window_idx, seq_hi, progress, "
    "alignment_distance, window_score) FROM STDIN (FORMAT BINARY)"
)
_PARAM_COPY = (
    "COPY score_window_params (time, session_id, window_idx, param, mean, std, frac_in_window, "
    "ideal, lo, hi) FROM STDIN (FORMAT BINARY)"
)


@dataclass
class _Rollup:
    """The per-second rollup of one transaction's frames, built up per encoded slice and
    aggregated once per transaction: (session position, second) partial counts per slice."""

    sessions: list[uuid.UUID]  # position -> session
    rigs: dict[int, str]  # position -> rig id (of the session's last record)
    parts: list[tuple[npt.NDArray[np.int64], ...]] = field(default_factory=list)

    def add(self, sidx: npt.NDArray[np.int64], t_us: npt.NDArray[np.int64], seq: npt.NDArray[np.int64],
            full: npt.NDArray[np.bool_]) -> None:  # fmt: skip
        """Fold frames (session position, time µs, seq, every tracker valid) into the parts."""
        keys, starts, order = _group_starts(sidx, t_us // 1_000_000)
        n = sidx.shape[0]
        self.parts.append((
            keys[0], keys[1], np.diff(np.append(starts, n)),
            np.add.reduceat(full[order].astype(np.int64), starts),
            np.maximum.reduceat(seq[order], starts), np.maximum.reduceat(t_us[order], starts),
        ))  # fmt: skip

    def rows(self) -> tuple[npt.NDArray[np.int64], ...]:
        """(session position, second, frames, valid frames, last seq, last time) per bucket."""
        cat = [np.concatenate([p[j] for p in self.parts]) for j in range(6)]
        keys, starts, order = _group_starts(cat[0], cat[1])
        return (
            keys[0], keys[1], np.add.reduceat(cat[2][order], starts),
            np.add.reduceat(cat[3][order], starts), np.maximum.reduceat(cat[4][order], starts),
            np.maximum.reduceat(cat[5][order], starts),
        )  # fmt: skip


def _group_starts(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> tuple[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Rows sorted by (a, b): each group's (a, b), the groups' first positions, the order."""
    order = np.lexsort((b, a))
    a_s, b_s = a[order], b[order]
    starts = np.flatnonzero(np.concatenate(([True], (a_s[1:] != a_s[:-1]) | (b_s[1:] != b_s[:-1]))))
    return (a_s[starts], b_s[starts]), starts, order


@dataclass
class _Pending:
    """Range bookkeeping (and the pose rollup) of one stream, saved after the COPYs."""

    stream: str
    work: dict[uuid.UUID, RangeSet]
    changed: set[uuid.UUID]
    rollup: _Rollup | None = None


def int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers (cast in SQL): the per-transaction bookkeeping
    sends thousands of elements, and psycopg's list dumper costs ~1 µs per element."""
    return "{" + ",".join(map(str, values)) + "}"


def uuid_array(values: Iterable[uuid.UUID]) -> str:
    """A PostgreSQL array literal of UUIDs (32 hex digits each, which ``uuid_in`` accepts)."""
    return "{" + ",".join([f"{u.int:032x}" for u in values]) + "}"


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings, every element quoted (backslash and quote escaped)."""
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us_to_datetime(value: int) -> datetime:
    """Unix µs to an aware datetime, exactly (no float rounding)."""
    return _UNIX_EPOCH + timedelta(microseconds=value)


def _ts_sql(param: str) -> str:
    """SQL turning a bigint µs parameter into timestamptz exactly (no float rounding)."""
    return f"('epoch'::timestamptz + {param}::bigint * interval '1 microsecond')"


class Store:
    """Encodes and writes records for one site; remembers committed seq ranges per session."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self._ranges: dict[tuple[str, uuid.UUID], RangeSet] = {}
        self._column_cache: dict[tuple[int, int, int], list[Column]] = {}
        self._templates: dict[tuple[int, int, int], npt.NDArray[Any]] = {}
        self._rig_len: dict[str, int] = {}
        self._all_valid: dict[tuple[int, int], npt.NDArray[np.bool_]] = {}

    # ---- range cache -------------------------------------------------------------------
    def reset(self) -> None:
        """Forget cached ranges (after a failed or unknown transaction outcome)."""
        self._ranges.clear()

    def forget(self, sessions: set[uuid.UUID]) -> None:
        """Drop cached ranges of these sessions (reloaded from the database if seen again)."""
        for key in [k for k in self._ranges if k[1] in sessions]:
            del self._ranges[key]

    def commit(self, outcome: WriteOutcome) -> None:
        """Adopt the ranges of a committed write."""
        self._ranges.update(outcome.ranges)

    def stored(self, stream: str, session_id: uuid.UUID) -> RangeSet | None:
        """Committed ranges known for a session (None if not loaded yet)."""
        rs = self._ranges.get((stream, session_id))
        return rs.copy() if rs is not None else None

    def load_ranges(self, conn: Conn, stream: str, sessions: Sequence[uuid.UUID]) -> None:
        """Load the committed ranges of sessions not cached yet."""
        missing = [s for s in set(sessions) if (stream, s) not in self._ranges]
        if not missing:
            return
        got: dict[uuid.UUID, RangeSet] = {s: RangeSet() for s in missing}
        rows = conn.execute(
            "SELECT session_id, seq_lo, seq_hi FROM ingest_ranges WHERE stream = %s AND session_id = ANY(%s)",
            (stream, missing),
        ).fetchall()
        for sid, lo, hi in rows:
            got[sid].add(int(lo), int(hi))
        for s, rs in got.items():
            self._ranges[(stream, s)] = rs

    # ---- writing -----------------------------------------------------------------------
    def write(self, conn: Conn, records: Sequence[Record]) -> WriteOutcome:
        """Write ``records`` in the current transaction; return what to adopt after commit."""
        out = WriteOutcome()
        # one pass sorting records by type (a batch holds thousands of pose chunks)
        by_type: dict[type, list[Any]] = defaultdict(list)
        for r in records:
            by_type[type(r)].append(r)
        poses: list[PoseBatch] = by_type.pop(PoseBatch, [])
        chunks: list[PoseChunk] = by_type.pop(PoseChunk, [])
        scores: list[ScoreWindowBatch] = by_type.pop(ScoreWindowBatch, [])
        sessions: list[SessionRecord] = by_type.pop(SessionRecord, [])
        cues: list[Cue] = by_type.pop(Cue, [])
        events: list[SessionEvent] = by_type.pop(SessionEvent, [])
        results: list[SessionResult] = by_type.pop(SessionResult, [])
        metrics: list[OpsMetric] = []
        for t, rs in by_type.items():  # OpsMetric and its subclasses (the writer's own)
            if not issubclass(t, OpsMetric):
                raise TypeError(f"not a telemetry record: {t.__name__}")
            metrics.extend(rs)
        pending: list[_Pending] = []
        if poses or chunks:
            pending.append(self._write_poses(conn, poses, chunks, out))
        if scores:
            pending.append(self._write_scores(conn, scores, out))
        # Everything after the COPYs in one round trip (pipeline mode; a COPY cannot be in one):
        # range bookkeeping, the per-second rollup and the low-rate records.
        with conn.pipeline():
            for p in pending:
                self._save_ranges(conn, p.stream, p.work, p.changed, out)
                if p.rollup is not None and p.rollup.parts:
                    self._write_rollup(conn, p.rollup)
            if sessions:
                self._write_sessions(conn, sessions)
            if cues:
                self._write_cues(conn, cues)
            if events:
                self._write_events(conn, events)
            if metrics:
                self._write_metrics(conn, metrics)
            if results:
                self._write_results(conn, results)
        out.other_rows = len(sessions) + len(cues) + len(events) + len(metrics) + len(results)
        return out

    def _working(
        self, conn: Conn, stream: str, sessions: list[uuid.UUID], out: WriteOutcome
    ) -> dict[uuid.UUID, RangeSet]:
        self.load_ranges(conn, stream, sessions)
        work: dict[uuid.UUID, RangeSet] = {}
        for s in set(sessions):
            work[s] = self._ranges[(stream, s)].copy()
        return work

    def _save_ranges(
        self,
        conn: Conn,
        stream: str,
        work: dict[uuid.UUID, RangeSet],
        changed: set[uuid.UUID],
        out: WriteOutcome,
    ) -> None:
        """Write only what changed against the committed ranges: intervals keyed by ``seq_lo``
        (the primary key), upserted when new or grown, deleted when merged away. Normally each
        session's one interval grows: one upsert row per session, an in-place (HOT) update,
        instead of deleting and re-inserting every interval of every session touched."""
        if not changed:
            return
        up_ids: list[uuid.UUID] = []
        up_lo: list[int] = []
        up_hi: list[int] = []
        del_ids: list[uuid.UUID] = []
        del_lo: list[int] = []
        committed = self._ranges
        for s in changed:
            new = work[s]
            out.ranges[(stream, s)] = new
            old_rs = committed.get((stream, s))
            before = dict(old_rs.intervals) if old_rs is not None else {}
            after = new.intervals
            for lo, hi in after:
                if before.pop(lo, None) != hi:
                    up_ids.append(s)
                    up_lo.append(lo)
                    up_hi.append(hi)
            for lo in before:  # intervals merged into an earlier one
                del_ids.append(s)
                del_lo.append(lo)
        if del_ids:
            conn.execute(
                "DELETE FROM ingest_ranges r USING unnest(%s::uuid[], %s::bigint[]) AS d (s, lo) "
                "WHERE r.stream = %s AND r.session_id = d.s AND r.seq_lo = d.lo",
                (uuid_array(del_ids), int_array(del_lo), stream),
            )
        if up_ids:
            conn.execute(
                "INSERT INTO ingest_ranges (stream, session_id, seq_lo, seq_hi) "
                "SELECT %s, * FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[]) "
                "ON CONFLICT (stream, session_id, seq_lo) DO UPDATE SET seq_hi = EXCLUDED.seq_hi",
                (stream, uuid_array(up_ids), int_array(up_lo), int_array(up_hi)),
            )

    def _rig_bytes(self, rig_id: str) -> int:
        n = self._rig_len.get(rig_id)
        if n is None:
            n = self._rig_len[rig_id] = len(rig_id.encode())
        return n

    def _write_poses(
        self, conn: Conn, batches: list[PoseBatch], chunks: list[PoseChunk], out: WriteOutcome
    ) -> _Pending:
        # Sessions keyed by their UUID's int: C-speed hashing (UUID.__hash__ is Python code).
        uniq: dict[int, uuid.UUID] = {b.session_id.int: b.session_id for b in batches}
        uniq.update({c.session_id.int: c.session_id for c in chunks})
        work = self._working(conn, POSE_STREAM, list(uniq.values()), out)
        rs_of = {i: work[s] for i, s in uniq.items()}
        changed_i: set[int] = set()
        # Group the surviving frames by record type and row shape (rig id bytes, trackers,
        # analog channels) so each group is one structured array. idx None = every frame of
        # the record is new (the common case, no mask needed).
        groups: dict[_GroupKey, list[_Member]] = defaultdict(list)
        for b in batches:
            if b.n == 0:
                continue
            si = b.session_id.int
            rs = rs_of[si]
            idx: npt.NDArray[np.intp] | None = None
            if not rs.add_if_new(b.seq0, b.seq0 + b.n - 1):
                seqs = b.seqs
                idx = np.flatnonzero(rs.missing_mask(seqs))
                out.pose_dropped += b.n - idx.size
                if idx.size == 0:
                    continue
                rs.add_seqs(seqs[idx])
            changed_i.add(si)
            groups[(False, self._rig_bytes(b.rig_id), b.poses.shape[1], b.analog.shape[1])].append(
                (b, idx, si)
            )
        rig_bytes = self._rig_bytes
        for c in chunks:  # the hot loop: ~10k chunks/s at 200 rigs, keep it lean
            n = c.n
            if n <= 0:
                continue
            si = c.session_id.int
            rs = rs_of[si]
            seq0 = c.seq0
            idx = None
            if not rs.add_if_new(seq0, seq0 + n - 1):
                seqs = np.arange(seq0, seq0 + n, dtype=np.int64)
                idx = np.flatnonzero(rs.missing_mask(seqs))
                out.pose_dropped += n - idx.size
                if idx.size == 0:
                    continue
                rs.add_seqs(seqs[idx])
            changed_i.add(si)
            groups[(True, rig_bytes(c.rig_id), c.poses.shape[1], c.analog.shape[1])].append((c, idx, si))
        changed = {uniq[i] for i in changed_i}
        if not groups:
            return _Pending(POSE_STREAM, work, changed)
        # Sessions by position for the whole transaction: each slice's session column and
        # rollup refer to these (no per-slice session tables).
        pos = {si: k for k, si in enumerate(uniq)}
        table = np.frombuffer(b"".join([si.to_bytes(16, "big") for si in uniq]), dtype="V16")
        rollup = _Rollup(list(uniq.values()), {})
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY pose_frames (time, rig_time, session_id, rig_id, seq, poses, analog, "
                "valid_mask) FROM STDIN (FORMAT BINARY)",
                writer=QueuedLibpqWriter(cur),
            ) as copy,
        ):
            copy.write(copybin.HEADER)
            for key, members in groups.items():
                # Encode in slices of ~ENCODE_ROWS so the server parses one slice while this
                # thread encodes the next (the COPY writer sends from its own thread).
                # The first slice is small so the server starts parsing at once.
                start, acc, limit = 0, 0, FIRST_SLICE_ROWS
                for end, (r, i, _si) in enumerate(members, 1):
                    acc += r.n if i is None else i.size
                    if acc >= limit or end == len(members):
                        rows = self._encode_group(key, members[start:end], pos, table, rollup, out)
                        out.pose_rows += rows.shape[0]
                        copy.write(rows.tobytes())
                        start, acc, limit = end, 0, ENCODE_ROWS
            copy.write(copybin.TRAILER)
        return _Pending(POSE_STREAM, work, changed, rollup)

    @staticmethod
    def _gather_batches(members: list[_Member]) -> tuple[npt.NDArray[Any], ...]:
        """Column arrays of the surviving frames of PoseBatch members."""
        bs: list[PoseBatch] = [m[0] for m in members]  # type: ignore[misc]
        idxs = [m[1] for m in members]

        def cat(name: str) -> npt.NDArray[Any]:
            arrays = [getattr(b, name) for b in bs]
            return np.concatenate([a if i is None else a[i] for a, i in zip(arrays, idxs, strict=True)])

        counts = np.array([b.n if i is None else i.size for b, i in zip(bs, idxs, strict=True)], np.int64)
        n = int(counts.sum())
        if all(i is None for i in idxs):
            # seq = seq0 of the row's batch + its index within the batch, without an arange each
            first = np.cumsum(counts) - counts
            seq0s = np.array([b.seq0 for b in bs], dtype=np.int64)
            seq_all = np.arange(n, dtype=np.int64) + np.repeat(seq0s - first, counts)
        else:
            seq_all = np.concatenate(
                [b.seqs if i is None else b.seq0 + i.astype(np.int64) for b, i in zip(bs, idxs, strict=True)]
            )
        return (
            counts, cat("time_us"), cat("rig_time"), seq_all, cat("valid_mask"), cat("poses"),
            cat("analog"),
        )  # fmt: skip

    def _gather_chunks(self, members: list[_Member], trackers: int) -> tuple[npt.NDArray[Any], ...]:
        """Column arrays of the surviving frames of PoseChunk members, batch-wise: the same
        arithmetic as :meth:`PoseChunk.to_pose_batch`, element for element."""
        cs: list[PoseChunk] = [m[0] for m in members]  # type: ignore[misc]
        k = len(cs)
        counts = np.fromiter([c.n for c in cs], np.int64, k)
        n = int(counts.sum())
        starts = np.cumsum(counts) - counts
        step = np.arange(n, dtype=np.int64) - np.repeat(starts, counts)  # frame index in chunk
        seq_all = step + np.repeat(np.fromiter([c.seq0 for c in cs], np.int64, k), counts)
        t0 = np.repeat(np.fromiter([c.rig_t0 for c in cs], np.float64, k), counts)
        per = np.repeat(np.fromiter([c.period for c in cs], np.float64, k), counts)
        off = np.repeat(np.fromiter([c.offset_s for c in cs], np.float64, k), counts)
        rig_time = t0 + step.astype(np.float64) * per
        t_all = np.rint((rig_time - off) * 1e6).astype(np.int64)
        poses = np.concatenate([c.poses for c in cs])
        analog = np.concatenate([c.analog for c in cs])
        if all(c.valid is None for c in cs):
            valid = np.full(n, (1 << trackers) - 1 if trackers < 32 else -1, dtype=np.int32)
        else:
            ones = self._all_valid
            vs: list[npt.NDArray[np.bool_]] = []
            for c in cs:
                v = c.valid
                if v is None:
                    v = ones.get((c.n, trackers))
                    if v is None:
                        v = ones[(c.n, trackers)] = np.ones((c.n, trackers), dtype=bool)
                vs.append(v)
            valid = valid_bits(np.concatenate(vs).reshape(n, trackers))
        if any(m[1] is not None for m in members):  # resends overlapping stored frames
            keep = np.ones(n, dtype=bool)
            for j, (c, i) in enumerate(zip(cs, (m[1] for m in members), strict=True)):
                if i is not None:
                    s = int(starts[j])
                    keep[s : s + c.n] = False
                    keep[s + i] = True
            counts = np.array([m[0].n if m[1] is None else m[1].size for m in members], np.int64)
            t_all, rig_time, seq_all = t_all[keep], rig_time[keep], seq_all[keep]
            valid, poses, analog = valid[keep], poses[keep], analog[keep]
        return counts, t_all, rig_time, seq_all, valid, poses, analog

    def _encode_group(
        self,
        key: _GroupKey,
        members: list[_Member],
        pos: dict[int, int],
        table: npt.NDArray[Any],
        rollup: _Rollup,
        out: WriteOutcome,
    ) -> npt.NDArray[Any]:
        """One structured array for all frames of a group; also folds them into the rollup.
        ``pos``/``table``: the transaction's session positions and their 16 uuid bytes."""
        is_chunk, rig_bytes, trackers, n_analog = key
        shape = (rig_bytes, trackers, n_analog)
        cols = self._column_cache.get(shape)
        if cols is None:
            cols = self._column_cache[shape] = pose_columns(*shape)
        if is_chunk:
            counts, t_all, rig_time, seq_all, valid_all, poses, analog = self._gather_chunks(
                members, trackers
            )
        else:
            counts, t_all, rig_time, seq_all, valid_all, poses, analog = self._gather_batches(members)
        n = int(t_all.shape[0])
        template = self._templates.get(shape)
        if template is None or template.shape[0] < n:
            # field counts, lengths and array headers never change for a shape: fill them once
            template = self._templates[shape] = copybin.new_rows(cols, max(n, ENCODE_ROWS))
        rows = template[:n]
        rows["time"] = copybin.us_to_pg(t_all)
        rows["rig_time"] = rig_time
        sidx_m = np.fromiter([pos[m[2]] for m in members], np.int64, len(members))
        rows["session_id"] = np.repeat(table[sidx_m], counts)
        recs = [m[0] for m in members]
        rigs = np.array([r.rig_id.encode() for r in recs], dtype=f"S{rig_bytes}")
        rows["rig_id"] = np.repeat(rigs, counts)
        rows["seq"] = seq_all
        rows["poses"]["e"]["v"] = poses.reshape(n, -1)
        if n_analog:
            rows["analog"]["e"]["v"] = analog
        rows["valid_mask"] = valid_all
        rollup.rigs.update(zip(sidx_m.tolist(), [r.rig_id for r in recs], strict=True))
        full = (1 << trackers) - 1
        v64 = valid_all.astype(np.int64) & 0xFFFFFFFF  # bit 31 (tracker 31) is the int32 sign
        rollup.add(np.repeat(sidx_m, counts), t_all, seq_all, (v64 & full) == full)
        tmax = int(t_all.max())
        if out.max_pose_time_us is None or tmax > out.max_pose_time_us:
            out.max_pose_time_us = tmax
        return rows

    @staticmethod
    def _write_rollup(conn: Conn, rollup: _Rollup) -> None:
        sidx, sec, frames, valid, last_seq, last_t = rollup.rows()
        positions = sidx.tolist()
        conn.execute(
            "INSERT INTO pose_rate_1s "
            "(bucket, session_id, rig_id, frames, valid_frames, last_seq, last_time) "
            f"SELECT {_ts_sql('u.b')}, u.s, u.r, u.f, u.v, u.q, {_ts_sql('u.t')} "
            "FROM unnest(%s::bigint[], %s::uuid[], %s::text[], %s::int[], %s::int[], "
            "%s::bigint[], %s::bigint[]) AS u (b, s, r, f, v, q, t) "
            "ON CONFLICT (session_id, bucket) DO UPDATE SET "
            "frames = pose_rate_1s.frames + EXCLUDED.frames, "
            "valid_frames = pose_rate_1s.valid_frames + EXCLUDED.valid_frames, "
            "last_seq = greatest(pose_rate_1s.last_seq, EXCLUDED.last_seq), "
            "last_time = greatest(pose_rate_1s.last_time, EXCLUDED.last_time)",
            (
                int_array((sec * 1_000_000).tolist()),
                uuid_array([rollup.sessions[k] for k in positions]),
                text_array([rollup.rigs[k] for k in positions]),
                int_array(frames.tolist()),
                int_array(valid.tolist()),
                int_array(last_seq.tolist()),
                int_array(last_t.tolist()),
            ),
        )

    def _write_scores(self, conn: Conn, batches: list[ScoreWindowBatch], out: WriteOutcome) -> _Pending:
        """Binary COPY of the new windows and their parameter rows; ranges saved by the caller."""
        work = self._working(conn, SCORE_STREAM, [b.session_id for b in batches], out)
        changed: set[uuid.UUID] = set()
        kept: list[tuple[ScoreWindowBatch, npt.NDArray[np.intp] | None]] = []
        for b in batches:
            n = b.n
            if n == 0:
                continue
            rs = work[b.session_id]
            widx = b.window_idx
            lo, hi = int(widx[0]), int(widx[-1])
            # the common case: one window, or consecutive ones, none stored yet
            if (n == 1 or (hi - lo == n - 1 and bool(np.all(np.diff(widx) == 1)))) and rs.add_if_new(
                lo, hi
            ):
                kept.append((b, None))
                changed.add(b.session_id)
                continue
            w64 = widx.astype(np.int64)
            order = np.argsort(w64, kind="stable")
            keep = rs.missing_mask(w64)
            # a window index repeated inside one batch counts once
            dup = np.zeros_like(keep)
            sw = w64[order]
            dup[order[1:]] = sw[1:] == sw[:-1]
            keep &= ~dup
            if not keep.any():
                continue
            rs.add_seqs(np.unique(w64[keep]))
            changed.add(b.session_id)
            kept.append((b, np.flatnonzero(keep)))
        if not kept:
            return _Pending(SCORE_STREAM, work, changed)

        def cat(name: str) -> npt.NDArray[Any]:
            return np.concatenate([getattr(b, name) if i is None else getattr(b, name)[i] for b, i in kept])

        counts = np.array([b.n if i is None else i.size for b, i in kept], dtype=np.int64)
        n_all = int(counts.sum())
        t_pg = copybin.us_to_pg(cat("time_us"))
        widx_all = cat("window_idx")
        sids = np.repeat(
            np.frombuffer(b"".join([b.session_id.bytes for b, _i in kept]), dtype="V16"), counts
        )
        starts = np.cumsum(counts) - counts
        site = self.site_id.encode()
        # score_windows: one structured array per rig id byte length
        rig_len = np.array([self._rig_bytes(b.rig_id) for b, _i in kept], dtype=np.int64)
        row_rig_len = np.repeat(rig_len, counts)
        rigs_all = np.repeat(np.array([b.rig_id.encode() for b, _i in kept]), counts)
        progress, dist, score = cat("progress"), cat("alignment_distance"), cat("window_score")
        seq_hi = cat("seq_hi")
        parts: list[bytes] = [copybin.HEADER]
        lengths = np.unique(rig_len).tolist()
        for length in lengths:
            sel: Any = slice(None) if len(lengths) == 1 else row_rig_len == length
            count = n_all if len(lengths) == 1 else int(np.count_nonzero(sel))
            rows = copybin.new_rows(score_columns(len(site), length), count)
            rows["time"] = t_pg[sel]
            rows["site_id"] = site
            rows["session_id"] = sids[sel]
            rows["rig_id"] = rigs_all[sel]
            rows["window_idx"] = widx_all[sel]
            rows["seq_hi"] = seq_hi[sel]
            rows["progress"] = progress[sel]
            rows["alignment_distance"] = dist[sel]
            rows["window_score"] = score[sel]
            parts.append(rows.tobytes())
        parts.append(copybin.TRAILER)
        with conn.cursor() as cur, cur.copy(_SCORE_COPY) as copy:
            copy.write(b"".join(parts))
        out.score_rows += n_all
        # score_window_params: per distinct parameter list (normally one: the rigs of a class
        # run one exercise) its batches' (windows, P) values stacked once, then per parameter
        # (its name's byte length fixes the row size) one column of them.
        by_params: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for k, (b, _i) in enumerate(kept):
            if b.params:
                by_params[b.params].append(k)
        if not by_params:
            return _Pending(SCORE_STREAM, work, changed)
        parts = [copybin.HEADER]
        for params, ks in by_params.items():
            if len(ks) == len(kept):
                rsel: Any = slice(None)
                c = counts
            else:
                rsel = np.concatenate([np.arange(starts[k], starts[k] + counts[k]) for k in ks])
                c = counts[ks]
            m = int(c.sum())
            group = [kept[k] for k in ks]
            values = {
                col: np.concatenate([getattr(b, col) if i is None else getattr(b, col)[i] for b, i in group])
                for col in ("mean", "std", "frac_in_window")
            }
            for band in ("ideal", "lo", "hi"):  # as scored: one per batch and parameter
                values[band] = np.repeat(np.stack([getattr(b, band) for b, _i in group]), c, axis=0)
            t_g, s_g, w_g = t_pg[rsel], sids[rsel], widx_all[rsel]
            for j, name in enumerate(params):
                rows = copybin.new_rows(param_columns(len(name.encode())), m)
                rows["time"] = t_g
                rows["session_id"] = s_g
                rows["window_idx"] = w_g
                rows["param"] = name.encode()
                for col, v in values.items():
                    rows[col] = v[:, j]
                parts.append(rows.tobytes())
        parts.append(copybin.TRAILER)
        with conn.cursor() as cur, cur.copy(_PARAM_COPY) as copy:
            copy.write(b"".join(parts))
        return _Pending(SCORE_STREAM, work, changed)

    def _write_sessions(self, conn: Conn, records: list[SessionRecord]) -> None:
        nullable = (
            "trainee_id", "class_id", "exercise_id", "rubric_id", "rubric_version",
            "clock_offset_ms", "clock_rtt_ms", "competition_id", "heat_id",
        )  # fmt: skip
        counters = (
            "frames_expected", "frames_received", "frames_interpolated", "frames_duplicate",
            "frames_nacked", "gap_count",
        )  # fmt: skip
        times = {"created_at": "created_us", "started_at": "started_us", "ended_at": "ended_us"}
        cols = ["session_id", "site_id", "rig_id", "state", "reason", *nullable, *counters]
        cols += list(times)
        values = [
            "%(session_id)s", "%(site_id)s", "%(rig_id)s", "%(state)s",
            "coalesce(%(reason)s, '')",
            *[f"%({c})s" for c in nullable],
            *[f"coalesce(%({c})s, 0)" for c in counters],
            f"coalesce({_ts_sql('%(created_us)s')}, now())",
            _ts_sql("%(started_us)s"),
            _ts_sql("%(ended_us)s"),
        ]  # fmt: skip
        sets = ["rig_id = EXCLUDED.rig_id", "state = EXCLUDED.state", "updated_at = now()"]
        for c in ("reason", *nullable, *counters):
            sets.append(f"{c} = coalesce(%({c})s, sessions.{c})")
        for col, key in times.items():
            sets.append(f"{col} = coalesce({_ts_sql(f'%({key})s')}, sessions.{col})")
        sql = (
            f"INSERT INTO sessions ({', '.join(cols)}) VALUES ({', '.join(values)}) "
            f"ON CONFLICT (session_id) DO UPDATE SET {', '.join(sets)}"
        )
        params = []
        for r in records:
            d: dict[str, Any] = {
                k: getattr(r, k) for k in ("session_id", "rig_id", "state", "reason", *nullable, *counters)
            }
            d.update(site_id=self.site_id, created_us=r.created_us, started_us=r.started_us)
            d["ended_us"] = r.ended_us
            params.append(d)
        with conn.cursor() as cur:
            cur.executemany(sql.encode(), params)

    def _write_cues(self, conn: Conn, cues: list[Cue]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO cues (time, site_id, session_id, rig_id, param, kind, severity, "
                f"value, message) VALUES ({_ts_sql('%s')}, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [
                    (c.time_us, self.site_id, c.session_id, c.rig_id, c.param, c.kind, c.severity,
                     c.value, c.message)
                    for c in cues
                ],
            )  # fmt: skip

    def _write_events(self, conn: Conn, events: list[SessionEvent]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO session_events (time, site_id, session_id, rig_id, kind, detail) "
                f"VALUES ({_ts_sql('%s')}, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(e.time_us, self.site_id, e.session_id, e.rig_id, e.kind, Jsonb(e.detail)) for e in events],
            )

    def _write_metrics(self, conn: Conn, metrics: list[OpsMetric]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ops_metrics (time, site_id, component, rig_id, name, label, value) "
                f"VALUES ({_ts_sql('%s')}, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(m.time_us, self.site_id, m.component, m.rig_id, m.name, m.label, m.value) for m in metrics],
            )

    def _write_results(self, conn: Conn, results: list[SessionResult]) -> None:
        with conn.cursor() as cur:
            for r in results:
                key = (r.session_id, r.rubric_id, r.rubric_version)
                cur.execute(
                    "INSERT INTO results (session_id, rubric_id, rubric_version, site_id, "
                    "trainee_id, exercise_id, final_score, passed, level, weakest_parameter, "
                    "alignment_distance, components, kernel_version, scored_at) VALUES "
                    f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    f"coalesce({_ts_sql('%s')}, now())) "
                    "ON CONFLICT (session_id, rubric_id, rubric_version) DO UPDATE SET "
                    "final_score = EXCLUDED.final_score, passed = EXCLUDED.passed, "
                    "level = EXCLUDED.level, weakest_parameter = EXCLUDED.weakest_parameter, "
                    "alignment_distance = EXCLUDED.alignment_distance, "
                    "components = EXCLUDED.components, kernel_version = EXCLUDED.kernel_version, "
                    "trainee_id = EXCLUDED.trainee_id, exercise_id = EXCLUDED.exercise_id, "
                    "scored_at = EXCLUDED.scored_at",
                    (
                        *key, self.site_id, r.trainee_id, r.exercise_id, r.final_score, r.passed,
                        r.level, r.weakest_parameter, r.alignment_distance, Jsonb(r.components),
                        r.kernel_version, r.scored_at_us,
                    ),
                )  # fmt: skip
                cur.execute(
                    "DELETE FROM result_metrics WHERE session_id = %s AND rubric_id = %s "
                    "AND rubric_version = %s",
                    key,
                )
                if r.metrics:
                    cur.executemany(
                        "INSERT INTO result_metrics (session_id, rubric_id, rubric_version, "
                        "metric, value, score, weight, time_in_window, ideal, lo, hi) VALUES "
                        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            (*key, m.metric, m.value, m.score, m.weight, m.time_in_window,
                             m.ideal, m.lo, m.hi)
                            for m in r.metrics
                        ],
                    )  # fmt: skip
