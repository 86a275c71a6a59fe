"""The writer's own row layouts (numpy arrays and small dataclasses), independent of the controller.

Times are Unix-epoch **microseconds** (int64), PostgreSQL's own resolution, so a round trip is
exact. Sequence numbers are per session and start at 0.

Every layout has a compact binary form (``to_bytes``/``from_bytes``) used by the spool:
``u32 meta length | meta JSON | raw little-endian arrays in the order the meta lists them``.
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

_U32 = struct.Struct("<I")


class Kind(IntEnum):
    """Spool record kinds (one per layout)."""

    POSE = 1
    SCORE = 2
    CUE = 3
    EVENT = 4
    METRIC = 5
    RESULT = 6
    SESSION = 7
    POSE_CHUNK = 8


def _pack(meta: dict[str, Any], arrays: list[tuple[str, npt.NDArray[Any]]]) -> bytes:
    meta = dict(meta)
    meta["arrays"] = [[name, a.dtype.newbyteorder("<").str, list(a.shape)] for name, a in arrays]
    head = json.dumps(meta, separators=(",", ":")).encode()
    parts = [_U32.pack(len(head)), head]
    for _name, a in arrays:
        parts.append(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return b"".join(parts)


def _unpack(payload: bytes) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    (n,) = _U32.unpack_from(payload, 0)
    meta: dict[str, Any] = json.loads(payload[4 : 4 + n])
    offset = 4 + n
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, dtype, shape in meta.pop("arrays"):
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        a = np.frombuffer(payload, dtype=dt, count=count, offset=offset).reshape(shape)
        arrays[name] = a
        offset += count * dt.itemsize
    return meta, arrays


@dataclass(frozen=True, eq=False)
class PoseBatch:
    """Consecutive frames of one session from one rig.

    - ``seq0``: sequence number of the first frame; frame i has seq ``seq0 + i``.
    - ``time_us`` (n,) int64: corrected time (controller clock), Unix µs.
    - ``rig_time`` (n,) float64: the rig's own clock, seconds.
    - ``poses`` (n, T, 7) float32: per tracker px, py, pz (millimetres, as on the wire), qx, qy,
      qz, qw (the wire protocol's order, docs/protocol.md §6.2); invalid trackers may hold NaN.
    - ``analog`` (n, A) float32: analog channels (A may be 0).
    - ``valid_mask`` (n,) int32: bit t set when tracker t was tracked (T ≤ 32).
    """

    session_id: uuid.UUID
    rig_id: str
    seq0: int
    time_us: npt.NDArray[np.int64]
    rig_time: npt.NDArray[np.float64]
    poses: npt.NDArray[np.float32]
    analog: npt.NDArray[np.float32]
    valid_mask: npt.NDArray[np.int32]

    kind: ClassVar[Kind] = Kind.POSE
    _n: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        n = self.time_us.shape[0]
        if self.poses.ndim != 3 or self.poses.shape[2] != 7 or self.poses.shape[0] != n:
            raise ValueError(f"poses must be (n, trackers, 7); got {self.poses.shape}, n={n}")
        if self.analog.ndim != 2 or self.analog.shape[0] != n:
            raise ValueError(f"analog must be (n, channels); got {self.analog.shape}")
        if self.rig_time.shape != (n,) or self.valid_mask.shape != (n,):
            raise ValueError("rig_time and valid_mask must be (n,)")
        if self.seq0 < 0:
            raise ValueError("seq0 must be >= 0")
        object.__setattr__(self, "_n", int(n))  # hot in the writer: a plain attribute

    @property
    def n(self) -> int:
        return self._n

    @property
    def seqs(self) -> npt.NDArray[np.int64]:
        return np.arange(self.seq0, self.seq0 + self.n, dtype=np.int64)

    @classmethod
    def from_chunk(
        cls,
        session_id: uuid.UUID,
        rig_id: str,
        first_seq: int,
        count: int,
        trackers: int,
        analog: int,
        floats: npt.NDArray[np.float32] | bytes | memoryview,
        rig_time_first: float,
        period: float,
        clock_offset_s: float,
        mask: npt.NDArray[np.uint8] | bytes | None = None,
    ) -> PoseBatch:
        """A batch from a wire sample chunk (docs/protocol.md §6) without per-sample Python.

        ``floats``: the chunk's float32 buffer, ``count × T × 7`` poses then ``count × A``
        analog; ``mask``: the optional validity mask bytes (``count × ceil(T/8)``, LSB first),
        None = every tracker valid. ``clock_offset_s`` is the protocol's offset, rig clock minus
        controller clock (docs/protocol.md §13); corrected time = rig time − offset, in Unix µs.
        """
        buf = np.frombuffer(floats, dtype="<f4") if not isinstance(floats, np.ndarray) else floats
        per = trackers * 7
        poses = buf[: count * per].reshape(count, trackers, 7)
        an = buf[count * per : count * (per + analog)].reshape(count, analog)
        rig_time = rig_time_first + np.arange(count, dtype=np.float64) * period
        time_us = np.rint((rig_time - clock_offset_s) * 1e6).astype(np.int64)
        if mask is None:
            valid = np.full(count, (1 << trackers) - 1 if trackers < 32 else -1, dtype=np.int32)
        else:
            nbytes = (trackers + 7) // 8
            m = np.frombuffer(mask, dtype=np.uint8).reshape(count, nbytes)
            padded = np.zeros((count, 4), dtype=np.uint8)
            padded[:, :nbytes] = m
            valid = padded.view("<u4").reshape(count).astype(np.int64).astype(np.int32)
        return cls(session_id, rig_id, int(first_seq), time_us, rig_time, poses, an, valid)

    def to_bytes(self) -> bytes:
        meta = {"s": str(self.session_id), "r": self.rig_id, "q": self.seq0}
        return _pack(
            meta,
            [
                ("t", self.time_us.astype(np.int64, copy=False)),
                ("rt", self.rig_time.astype(np.float64, copy=False)),
                ("p", self.poses.astype(np.float32, copy=False)),
                ("a", self.analog.astype(np.float32, copy=False)),
                ("v", self.valid_mask.astype(np.int32, copy=False)),
            ],
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> PoseBatch:
        meta, a = _unpack(payload)
        return cls(uuid.UUID(meta["s"]), meta["r"], int(meta["q"]), a["t"], a["rt"], a["p"], a["a"], a["v"])


_CHUNK_HEAD = struct.Struct("<16sQIdddHHBH")
"""PoseChunk spool header: session, seq0, n, rig_t0, period, offset_s, trackers, analog
channels, has-valid flag, rig id byte length (then rig id, poses, analog, valid bytes)."""


class PoseChunk:
    """A wire chunk of one session handed over as it came: no numpy work on the caller's thread.

    The writer thread turns many of these into one binary COPY (vectorised); the stored rows
    are exactly those of :meth:`to_pose_batch` (the same arithmetic, batch-wise):

    - frame i (0 ≤ i < n) has seq ``seq0 + i`` and rig time ``rig_t0 + i × period`` (float64 s);
    - its corrected time is ``rint((rig time − offset_s) × 1e6)`` Unix µs, ``offset_s`` = rig
      clock − controller clock (docs/protocol.md §13);
    - ``poses`` (n, T, 7) float32 and ``analog`` (n, A) float32 may be read-only views of a
      received buffer (kept alive, never written); ``valid`` (n, T) bool, or None = every
      tracker tracked (valid_mask bit t = tracker t, T ≤ 32).

    Nothing is checked here (that would cost the caller); shapes are the caller's contract,
    and a chunk the database refuses is isolated into ``ingest_rejects`` like any record.
    """

    __slots__ = (  # noqa: RUF023 (constructor order)
        "session_id", "rig_id", "seq0", "n", "rig_t0", "period", "offset_s", "poses", "analog",
        "valid",
    )  # fmt: skip

    kind: ClassVar[Kind] = Kind.POSE_CHUNK

    def __init__(
        self,
        session_id: uuid.UUID,
        rig_id: str,
        seq0: int,
        n: int,
        rig_t0: float,
        period: float,
        offset_s: float,
        poses: npt.NDArray[np.float32],
        analog: npt.NDArray[np.float32],
        valid: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        self.session_id = session_id
        self.rig_id = rig_id
        self.seq0 = seq0
        self.n = n
        self.rig_t0 = rig_t0
        self.period = period
        self.offset_s = offset_s
        self.poses = poses
        self.analog = analog
        self.valid = valid

    def __repr__(self) -> str:
        return (
            f"PoseChunk({self.session_id}, {self.rig_id!r}, seq0={self.seq0}, n={self.n}, "
            f"rig_t0={self.rig_t0!r}, period={self.period!r}, offset_s={self.offset_s!r})"
        )

    @property
    def seqs(self) -> npt.NDArray[np.int64]:
        return np.arange(self.seq0, self.seq0 + self.n, dtype=np.int64)

    def rig_times(self) -> npt.NDArray[np.float64]:
        """Rig clock of every frame (the protocol's ``first + i × period``)."""
        return np.asarray(self.rig_t0 + np.arange(self.n, dtype=np.float64) * self.period)

    def valid_mask(self) -> npt.NDArray[np.int32]:
        """Per frame bit t = tracker t valid (the ``valid_mask`` column)."""
        n, t = self.n, int(self.poses.shape[1])
        if self.valid is None:
            return np.full(n, (1 << t) - 1 if t < 32 else -1, dtype=np.int32)
        return valid_bits(np.asarray(self.valid, dtype=bool).reshape(n, t))

    def to_pose_batch(self) -> PoseBatch:
        """The same frames as a :class:`PoseBatch` (the reference the writer's rows equal)."""
        rig_time = self.rig_times()
        time_us = np.rint((rig_time - self.offset_s) * 1e6).astype(np.int64)
        return PoseBatch(
            self.session_id, self.rig_id, int(self.seq0), time_us, rig_time, self.poses,
            self.analog, self.valid_mask(),
        )  # fmt: skip

    def to_bytes(self) -> bytes:
        """Compact spool form: a fixed header and the raw little-endian arrays (no JSON)."""
        rig = self.rig_id.encode()
        t, a = int(self.poses.shape[1]), int(self.analog.shape[1])
        head = _CHUNK_HEAD.pack(
            self.session_id.bytes, self.seq0, self.n, self.rig_t0, self.period, self.offset_s,
            t, a, self.valid is not None, len(rig),
        )  # fmt: skip
        parts = [
            head,
            rig,
            np.ascontiguousarray(self.poses, dtype="<f4").tobytes(),
            np.ascontiguousarray(self.analog, dtype="<f4").tobytes(),
        ]
        if self.valid is not None:
            parts.append(np.ascontiguousarray(self.valid, dtype=np.bool_).tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, payload: bytes) -> PoseChunk:
        sid, seq0, n, t0, period, offset, t, a, has_valid, rlen = _CHUNK_HEAD.unpack_from(payload)
        off = _CHUNK_HEAD.size
        rig = bytes(payload[off : off + rlen]).decode()
        off += rlen
        poses = np.frombuffer(payload, "<f4", n * t * 7, off).reshape(n, t, 7)
        off += poses.nbytes
        analog = np.frombuffer(payload, "<f4", n * a, off).reshape(n, a)
        off += analog.nbytes
        valid = np.frombuffer(payload, np.bool_, n * t, off).reshape(n, t) if has_valid else None
        return cls(uuid.UUID(bytes=sid), rig, seq0, n, t0, period, offset, poses, analog, valid)


def valid_bits(valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
    """(n, T) tracker validity as the int32 bit mask (bit t = tracker t; T ≤ 32, bit 31 is the
    sign), the arithmetic of the controller's PoseBatch path."""
    bits = (np.uint32(1) << np.arange(valid.shape[1], dtype=np.uint32)).astype(np.int64)
    out: npt.NDArray[np.int32] = (valid.astype(np.int64) * bits).sum(axis=1).astype(np.int32)
    return out


@dataclass(frozen=True, eq=False)
class ScoreWindowBatch:
    """Consecutive scoring windows of one session.

    ``window_idx`` (n,) int32 per session from 0 (the idempotence key); ``time_us`` (n,) end of
    each window; ``seq_hi`` (n,) last pose seq in the window; ``progress``, ``alignment_distance``,
    ``window_score`` (n,) float32. Per parameter (P names in ``params``): ``mean``, ``std``,
    ``frac_in_window`` (n, P) float32 and the band as scored: ``ideal``, ``lo``, ``hi`` (P,).
    """

    session_id: uuid.UUID
    rig_id: str
    window_idx: npt.NDArray[np.int32]
    time_us: npt.NDArray[np.int64]
    seq_hi: npt.NDArray[np.int64]
    progress: npt.NDArray[np.float32]
    alignment_distance: npt.NDArray[np.float32]
    window_score: npt.NDArray[np.float32]
    params: tuple[str, ...]
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    frac_in_window: npt.NDArray[np.float32]
    ideal: npt.NDArray[np.float32]
    lo: npt.NDArray[np.float32]
    hi: npt.NDArray[np.float32]

    kind: ClassVar[Kind] = Kind.SCORE

    def __post_init__(self) -> None:
        n, p = self.window_idx.shape[0], len(self.params)
        for name in ("time_us", "seq_hi", "progress", "alignment_distance", "window_score"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},)")
        for name in ("mean", "std", "frac_in_window"):
            if getattr(self, name).shape != (n, p):
                raise ValueError(f"{name} must be ({n}, {p})")
        for name in ("ideal", "lo", "hi"):
            if getattr(self, name).shape != (p,):
                raise ValueError(f"{name} must be ({p},)")

    @property
    def n(self) -> int:
        return int(self.window_idx.shape[0])

    _ARRAYS: ClassVar[tuple[str, ...]] = (
        "window_idx", "time_us", "seq_hi", "progress", "alignment_distance", "window_score",
        "mean", "std", "frac_in_window", "ideal", "lo", "hi",
    )  # fmt: skip

    def take(self, mask: npt.NDArray[np.bool_]) -> ScoreWindowBatch:
        """The windows where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        kw: dict[str, Any] = {}
        for name in self._ARRAYS:
            a = getattr(self, name)
            kw[name] = a if name in ("ideal", "lo", "hi") else a[idx]
        return ScoreWindowBatch(self.session_id, self.rig_id, params=self.params, **kw)

    def to_bytes(self) -> bytes:
        meta = {"s": str(self.session_id), "r": self.rig_id, "p": list(self.params)}
        return _pack(meta, [(name, getattr(self, name)) for name in self._ARRAYS])

    @classmethod
    def from_bytes(cls, payload: bytes) -> ScoreWindowBatch:
        meta, a = _unpack(payload)
        return cls(uuid.UUID(meta["s"]), meta["r"], params=tuple(meta["p"]), **a)


def _json_default(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


@dataclass(frozen=True)
class _JsonRecord:
    """Low-rate records travel through the spool as JSON."""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), default=_json_default, separators=(",", ":")).encode()

    @classmethod
    def _fields_from(cls, payload: bytes) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(payload)
        if "session_id" in data and data["session_id"] is not None:
            data["session_id"] = uuid.UUID(data["session_id"])
        return data


@dataclass(frozen=True)
class Cue(_JsonRecord):
    """A feedback cue sent to a rig (deduplicated on session, time, param, kind)."""

    time_us: int
    session_id: uuid.UUID
    rig_id: str
    kind: str
    param: str = ""
    severity: int = 1
    value: float | None = None
    message: str = ""

    record_kind: ClassVar[Kind] = Kind.CUE

    @classmethod
    def from_bytes(cls, payload: bytes) -> Cue:
        return cls(**cls._fields_from(payload))


@dataclass(frozen=True)
class SessionEvent(_JsonRecord):
    """Something that happened in a session (state change, rig lost, note)."""

    time_us: int
    session_id: uuid.UUID
    kind: str
    rig_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    record_kind: ClassVar[Kind] = Kind.EVENT

    @classmethod
    def from_bytes(cls, payload: bytes) -> SessionEvent:
        return cls(**cls._fields_from(payload))


@dataclass(frozen=True)
class OpsMetric(_JsonRecord):
    """One operations sample: counter or gauge ``name`` (with ``label``, e.g. a frame kind)."""

    time_us: int
    component: str
    name: str
    value: float
    rig_id: str = ""
    label: str = ""

    record_kind: ClassVar[Kind] = Kind.METRIC

    @classmethod
    def from_bytes(cls, payload: bytes) -> OpsMetric:
        return cls(**cls._fields_from(payload))


@dataclass(frozen=True)
class MetricBreakdown:
    """One metric of a result."""

    metric: str
    value: float | None = None
    score: float | None = None
    weight: float | None = None
    time_in_window: float | None = None
    ideal: float | None = None
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class SessionResult(_JsonRecord):
    """The final result of a session under one rubric version (upserted on that key)."""

    session_id: uuid.UUID
    rubric_id: str
    rubric_version: int
    final_score: float
    passed: bool
    trainee_id: str | None = None
    exercise_id: str | None = None
    level: str | None = None
    weakest_parameter: str | None = None
    alignment_distance: float | None = None
    components: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[MetricBreakdown, ...] = ()
    kernel_version: str = ""
    scored_at_us: int | None = None

    record_kind: ClassVar[Kind] = Kind.RESULT

    @classmethod
    def from_bytes(cls, payload: bytes) -> SessionResult:
        data = cls._fields_from(payload)
        data["metrics"] = tuple(MetricBreakdown(**m) for m in data.get("metrics", ()))
        return cls(**data)


@dataclass(frozen=True)
class SessionRecord(_JsonRecord):
    """The controller's view of a session, upserted on ``session_id``.

    Fields left ``None`` keep what the database already has (so a state change does not need
    to repeat everything). Counters are absolute values, not increments.
    """

    session_id: uuid.UUID
    rig_id: str
    state: str
    trainee_id: str | None = None
    class_id: str | None = None
    exercise_id: str | None = None
    rubric_id: str | None = None
    rubric_version: int | None = None
    reason: str | None = None
    created_us: int | None = None
    started_us: int | None = None
    ended_us: int | None = None
    frames_expected: int | None = None
    frames_received: int | None = None
    frames_interpolated: int | None = None
    frames_duplicate: int | None = None
    frames_nacked: int | None = None
    gap_count: int | None = None
    clock_offset_ms: float | None = None
    clock_rtt_ms: float | None = None
    competition_id: str | None = None
    heat_id: str | None = None

    record_kind: ClassVar[Kind] = Kind.SESSION

    @classmethod
    def from_bytes(cls, payload: bytes) -> SessionRecord:
        return cls(**cls._fields_from(payload))


Record = (
    PoseBatch | PoseChunk | ScoreWindowBatch | Cue | SessionEvent | OpsMetric | SessionResult
    | SessionRecord
)

_DECODERS: dict[int, Any] = {
    Kind.POSE: PoseBatch.from_bytes,
    Kind.SCORE: ScoreWindowBatch.from_bytes,
    Kind.CUE: Cue.from_bytes,
    Kind.EVENT: SessionEvent.from_bytes,
    Kind.METRIC: OpsMetric.from_bytes,
    Kind.RESULT: SessionResult.from_bytes,
    Kind.SESSION: SessionRecord.from_bytes,
    Kind.POSE_CHUNK: PoseChunk.from_bytes,
}


def kind_of(record: Record) -> Kind:
    """The spool kind of a record."""
    if isinstance(record, PoseBatch | PoseChunk | ScoreWindowBatch):
        return record.kind
    return record.record_kind


def decode(kind: int, payload: bytes) -> Record:
    """A record from its spool form."""
    try:
        decoder = _DECODERS[kind]
    except KeyError:
        raise ValueError(f"unknown telemetry record kind {kind}") from None
    result: Record = decoder(payload)
    return result


def rows_of(record: Record) -> int:
    """Rows a record adds (for batching and back-pressure accounting)."""
    if isinstance(record, PoseBatch | PoseChunk | ScoreWindowBatch):
        return record.n
    return 1
