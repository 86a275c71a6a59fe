"""The rig ↔ controller ↔ instructor wire protocol: constants, message models and frame codec.

`docs/protocol.md` is the specification; this module is its one implementation (the version
travels in every message, as Majordomo's `MDPW01` frame does). Pure functions over bytes: no
sockets, no clocks, no project imports, so rigs, controller, tests and third-party tools share it.

Every message is exactly two ZeroMQ frames, sent by hand with SNDMORE (performance.md: two
`send` calls run ~2.5x faster than `send_multipart`):

* control (JSON):  frame 0 = 8-byte prologue, frame 1 = UTF-8 JSON object with a ``type`` key.
* sample chunk:    frame 0 = 8-byte prologue + 56-byte chunk header (+ validity mask),
                   frame 1 = raw little-endian float32 samples.

Every decoder raises only `ProtocolError`, whose `kind` the receiver counts per kind.
"""

from __future__ import annotations

import enum
import json
import math
import re
import struct
import uuid
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# ─────────────────────────────────────────────────────────────────────────────── version, limits

PROTOCOL_MAJOR: Final = 1
PROTOCOL_MINOR: Final = 0
PROTOCOL_VERSION: Final = f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"

MAGIC: Final = b"LABP"
"""First four bytes of frame 0 of every message (the protocol signature)."""

PROLOGUE = struct.Struct("<4sBBBB")  # magic, major, minor, message class, reserved (0)
PROLOGUE_SIZE: Final = PROLOGUE.size  # 8

CHUNK_HEADER = struct.Struct("<4sBBBBII16sQIIdd")
"""Prologue + chunk header, 64 bytes; field offsets are tabulated in docs/protocol.md."""
CHUNK_HEADER_SIZE: Final = CHUNK_HEADER.size  # 64

POSE_WIDTH: Final = 7  # x, y, z (millimetres), qx, qy, qz, qw (scalar last)
MAX_TRACKERS: Final = 32  # one u32 word covers a sample's mask; real rigs have 2-8 trackers
MAX_ANALOG: Final = 64
MAX_SAMPLES_PER_CHUNK: Final = 4096  # ~34 s at 120 Hz; agents send 10-30 ms of data
MAX_CONTROL_BYTES: Final = 256 * 1024  # JSON frame; a START's scene geometry must fit
MAX_CHUNK_BYTES: Final = (
    MAX_SAMPLES_PER_CHUNK * (MAX_TRACKERS * POSE_WIDTH + MAX_ANALOG) * 4
)  # 4.7 MB float32 frame at the extremes
MAX_MESSAGE_BYTES: Final = MAX_CHUNK_BYTES + CHUNK_HEADER_SIZE + MAX_SAMPLES_PER_CHUNK * 4
"""Largest legal frame; receivers set ZMQ_MAXMSGSIZE to this so a larger one is cut off early."""

# Defaults a controller announces in WELCOME (docs/protocol.md, "Liveness" and "Flow control").
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 1.0  # architecture.md: about 1 s
HEARTBEAT_MISSES_DEAD: Final = 3  # dead after 3 missed beats
# Credit window: 32 chunks = 0.64 s at 20 ms, several times the ack latency (≤ 100 ms coalescing
# + a group-committed fsync + a round trip). A larger window only parks a slow controller's backlog
# as small messages in socket buffers; with 32 it stays at the rig, where it is joined into
# 100 ms chunks (merge_chunks). Measured: 200 rigs at load 9, durable/offered 0.76 → 0.95.
DEFAULT_MAX_INFLIGHT_CHUNKS: Final = 32
DEFAULT_MAX_INFLIGHT_BYTES: Final = 4 * 1024 * 1024
ACK_COALESCE_S: Final = 0.05  # a controller sends ≤ 1 DATA_ACK per session per 50 ms (§10)
ACK_MAX_DELAY_S: Final = 0.1  # ... but acknowledges durable data within 100 ms
ZMTP_HEARTBEAT_IVL_MS: Final = 1000  # ZMQ_HEARTBEAT_IVL; catches a frozen peer / dead TCP
ZMTP_HEARTBEAT_TIMEOUT_MS: Final = 3000  # ZMQ_HEARTBEAT_TIMEOUT and ZMQ_HEARTBEAT_TTL
CLOCK_PROBES_KEPT: Final = 8  # min-RTT probe of the last 8, as LSL does

_F32 = np.dtype("<f4")


class MessageClass(enum.IntEnum):
    """Byte 6 of the prologue: what frame 0 and frame 1 hold."""

    CONTROL = 0x43  # 'C': frame 1 is JSON
    CHUNK = 0x44  # 'D': frame 0 continues with the chunk header, frame 1 is float32 samples


class ChunkFlags(enum.IntFlag):
    """Bits of the chunk header's ``flags`` word; undefined bits must be 0."""

    NONE = 0
    MASK = 1 << 0  # a validity mask follows the header in frame 0 (some tracker samples invalid)
    RESEND = 1 << 1  # this chunk was sent before (statistics only; dedup is by sequence)
    LAST = 1 << 2  # last chunk of the session's stream (END_OF_STREAM follows on control)


_KNOWN_FLAGS = int(ChunkFlags.MASK | ChunkFlags.RESEND | ChunkFlags.LAST)
_MASK_BIT = int(ChunkFlags.MASK)  # plain int: `int & IntFlag` runs Python enum code per chunk


# ─────────────────────────────────────────────────────────────────────────────── errors


class ErrorKind(enum.StrEnum):
    """Why a message was refused. Decoder kinds first, then ones a peer's state adds."""

    MALFORMED = "malformed"  # wrong frame count, bad prologue, not JSON, header too short
    BAD_VERSION = "bad_version"  # signature ok, major version not ours
    UNKNOWN_TYPE = "unknown_type"  # JSON ``type`` (or message class) we do not know
    INVALID = "invalid"  # known type, but a field is missing, of the wrong type or out of range
    BAD_SIZE = "bad_size"  # sample buffer length differs from what the header declares
    NON_FINITE = "non_finite"  # inf anywhere, or NaN where the validity mask says valid
    OVERSIZED = "oversized"  # frame larger than the protocol limit
    BAD_LAYOUT = "bad_layout"  # chunk's channel layout id is not the one the rig declared
    # Raised by peers (not the pure decoder) and sent back in ERROR / NACK / DATA_NACK:
    UNKNOWN_RIG = "unknown_rig"  # not registered (e.g. controller restarted): send HELLO again
    UNKNOWN_SESSION = "unknown_session"
    WRONG_RIG = "wrong_rig"  # session or handle belongs to another rig
    INTERNAL = "internal"


class ProtocolError(Exception):
    """The one exception every decoder raises; ``kind`` is meant for per-kind counters."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


class NackCode(enum.StrEnum):
    """Reason codes of NACK (a refused command) and REJECT (a refused HELLO)."""

    BUSY = "busy"  # rig already runs another session
    BAD_STATE = "bad_state"  # command does not fit the current state (e.g. STOP when idle)
    UNKNOWN_SESSION = "unknown_session"
    INVALID_SCENE = "invalid_scene"  # the driver cannot build this exercise
    DRIVER_ERROR = "driver_error"  # the pose source failed to start/stop
    UNSUPPORTED = "unsupported"  # capability missing
    NOT_REGISTERED = "not_registered"
    BAD_VERSION = "bad_version"
    DUPLICATE_RIG = "duplicate_rig"  # another live connection already registered this rig id
    NOT_ALLOWED = "not_allowed"  # allow-list / key mismatch
    TIMEOUT = "timeout"  # (controller side) the rig did not answer in time
    DEAD = "dead"  # (controller side) the rig is not alive
    INTERNAL = "internal"


# ─────────────────────────────────────────────────────────────────────────────── prologue


@dataclass(frozen=True, slots=True)
class Prologue:
    """The decoded first 8 bytes of frame 0."""

    major: int
    minor: int
    message_class: MessageClass


_SIG = MAGIC + bytes([PROTOCOL_MAJOR])  # what frame 0 of every message of our major starts with
_CONTROL_PROLOGUE = PROLOGUE.pack(MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR, MessageClass.CONTROL, 0)


def read_prologue(frame0: bytes | memoryview) -> Prologue:
    """Check the signature and major version of a message's first frame.

    Any minor version of our major is accepted (minor versions only add optional fields and
    message types a peer may answer with ``unknown_type``).
    """
    if len(frame0) < PROLOGUE_SIZE:
        raise ProtocolError(ErrorKind.MALFORMED, f"frame 0 has {len(frame0)} bytes, need 8")
    magic, major, minor, mclass, _reserved = PROLOGUE.unpack_from(frame0, 0)
    if magic != MAGIC:
        raise ProtocolError(ErrorKind.MALFORMED, f"bad signature {bytes(magic)!r}")
    if major != PROTOCOL_MAJOR:
        raise ProtocolError(
            ErrorKind.BAD_VERSION, f"peer speaks {major}.{minor}, we speak {PROTOCOL_VERSION}"
        )
    try:
        message_class = MessageClass(mclass)
    except ValueError:
        raise ProtocolError(ErrorKind.UNKNOWN_TYPE, f"message class {mclass:#x}") from None
    return Prologue(major, minor, message_class)


# ─────────────────────────────────────────────────────────────────────────────── control models

RigId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
ShortText = Annotated[str, Field(max_length=256)]
LongText = Annotated[str, Field(max_length=4096)]
Seq = Annotated[int, Field(ge=-1, lt=2**63)]  # -1 = "nothing yet"
Count = Annotated[int, Field(ge=0, lt=2**63)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
UuidStr = Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{32,36}$")]


class _Model(BaseModel):
    # extra="ignore": a newer minor version may add optional fields; older peers skip them.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)


class TrackerRole(enum.StrEnum):
    """What a tracker is attached to; rubrics bind metrics to roles, not to names."""

    TOOL = "tool"  # the tracked tool: torch, spray gun, ...
    HEADSET = "headset"
    OFF_HAND = "off_hand"
    TOOL_HAND = "tool_hand"
    WORKPIECE = "workpiece"
    OTHER = "other"


class TrackerSpec(_Model):
    """One tracker a rig streams, in the order of the sample buffer."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    role: TrackerRole


class Capability(enum.StrEnum):
    """Optional features a rig announces in HELLO."""

    CUES = "cues"  # shows feedback cues to the trainee
    TIME_SYNC = "time_sync"  # answers TIME_SYNC (every conforming rig should)
    SPOOL = "spool"  # keeps unacknowledged data on disk across its own restarts
    SELF_FINISH = "self_finish"  # exercises may end by themselves (END_OF_STREAM reason finished)


class RigState(enum.StrEnum):
    """The rig agent's own state (the controller's session states are richer)."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"  # flushing the tail; END_OF_STREAM not yet acknowledged
    ERROR = "error"  # driver failed; needs an operator


class ActiveSession(_Model):
    """The session a (re)connecting rig is in the middle of."""

    session_id: UuidStr
    exercise_id: ShortText
    state: RigState
    next_seq: Count  # sequence number the next sample will get


class BacklogEntry(_Model):
    """Samples of one session the rig still holds because no DATA_ACK covered them."""

    session_id: UuidStr
    first_seq: Count  # lowest unacknowledged sequence number
    last_seq: Seq  # highest sequence number produced so far
    chunks: Count
    on_disk: Count = 0  # of those chunks, how many are in the rig's spool


class Hello(_Model):
    """Rig → controller: register (also after every reconnect)."""

    type: Literal["hello"] = "hello"
    rig_id: RigId
    site_id: ShortText = ""
    trackers: Annotated[list[TrackerSpec], Field(min_length=1, max_length=MAX_TRACKERS)]
    rate_hz: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)]
    analog: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]], Field(max_length=MAX_ANALOG)
    ] = []
    software_version: ShortText = ""
    capabilities: list[Capability] = []
    public_key: Annotated[str, Field(max_length=64)] | None = None  # Z85 CurveZMQ key
    layout_id: Annotated[int, Field(ge=0, lt=2**32)]  # must equal layout_id_for(trackers, analog)
    rig_time: FiniteFloat  # rig clock when HELLO was sent
    active_session: ActiveSession | None = None
    backlog: Annotated[list[BacklogEntry], Field(max_length=1024)] = []


class ResumeEntry(_Model):
    """Per session: highest sequence durably stored (contiguously from 0); -1 when none."""

    session_id: UuidStr
    durable_seq: Seq
    resume: bool = True  # False: the controller will not take this session's data (park it)


class Welcome(_Model):
    """Controller → rig: registration accepted."""

    type: Literal["welcome"] = "welcome"
    rig_id: RigId
    rig_handle: Annotated[int, Field(ge=1, lt=2**32)]  # goes into every chunk header
    controller_id: UuidStr  # new per controller process: a change means "controller restarted"
    server_time: FiniteFloat  # controller wall clock (Unix seconds)
    heartbeat_interval_s: Annotated[float, Field(gt=0, le=60)] = DEFAULT_HEARTBEAT_INTERVAL_S
    max_inflight_chunks: Annotated[int, Field(ge=1)] = DEFAULT_MAX_INFLIGHT_CHUNKS
    max_inflight_bytes: Annotated[int, Field(ge=1)] = DEFAULT_MAX_INFLIGHT_BYTES
    data_endpoint: Annotated[str, Field(max_length=256)] | None = None  # None: see data_endpoint_for
    resume: Annotated[list[ResumeEntry], Field(max_length=1024)] = []
    active_session_ok: bool = True  # False: abandon the active session (the controller ended it)


class Reject(_Model):
    """Controller → rig: registration refused."""

    type: Literal["reject"] = "reject"
    code: NackCode
    reason: LongText = ""
    retry_after_s: Annotated[float, Field(ge=0)] | None = None


class Heartbeat(_Model):
    """Both ways, every heartbeat interval; the peer is dead after 3 missed intervals."""

    type: Literal["heartbeat"] = "heartbeat"
    sender_time: FiniteFloat  # the sender's clock (rig clock or controller wall clock)
    state: RigState | None = None  # rig → controller
    session_id: UuidStr | None = None  # rig → controller: current session
    next_seq: Count | None = None  # rig → controller: samples produced so far in that session
    backlog_chunks: Count = 0  # rig → controller: chunks awaiting DATA_ACK
    backlog_bytes: Count = 0
    trackers_valid: list[bool] | None = None  # rig → controller: last sample's validity per tracker
    controller_id: UuidStr | None = None  # controller → rig


class Start(_Model):
    """Controller → rig: start a session."""

    type: Literal["start"] = "start"
    command_id: UuidStr
    session_id: UuidStr
    exercise_id: ShortText
    scene: dict[str, Any] = {}  # exercise geometry the rig needs to simulate or show it
    trainee: ShortText  # pseudonym, never a real name
    rubric_version: ShortText = ""
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    params: dict[str, Any] = {}  # driver-specific (e.g. simulated skill level, seed)


class Stop(_Model):
    """Controller → rig: end a session normally (data so far is kept and flushed)."""

    type: Literal["stop"] = "stop"
    command_id: UuidStr
    session_id: UuidStr
    reason: ShortText = ""


class Abort(_Model):
    """Controller → rig: end a session at once (data so far is still flushed: nothing is lost)."""

    type: Literal["abort"] = "abort"
    command_id: UuidStr
    session_id: UuidStr
    reason: ShortText = ""


class Ack(_Model):
    """Rig → controller: command done."""

    type: Literal["ack"] = "ack"
    command_id: UuidStr
    rig_time: FiniteFloat
    detail: dict[str, Any] = {}


class Nack(_Model):
    """Rig → controller: command refused or failed."""

    type: Literal["nack"] = "nack"
    command_id: UuidStr
    code: NackCode
    reason: LongText = ""


class Status(_Model):
    """Rig → controller: state changed (sent at once, besides the periodic heartbeat)."""

    type: Literal["status"] = "status"
    state: RigState
    session_id: UuidStr | None = None
    next_seq: Count | None = None
    backlog_chunks: Count = 0
    backlog_bytes: Count = 0
    detail: LongText = ""


class DataAck(_Model):
    """Controller → rig: every sample 0..durable_seq of the session is durably stored.

    Cumulative: a later DATA_ACK supersedes earlier ones; the rig frees those chunks.
    """

    type: Literal["data_ack"] = "data_ack"
    session_id: UuidStr
    durable_seq: Seq
    received_seq: Seq = -1  # highest seq seen (durable or not): a gap shows as received > durable


class DataNack(_Model):
    """Controller → rig: a chunk was refused (bad size, non-finite, unknown session ...).

    Only for chunks whose header could be read; the rig logs it and drops or parks that chunk.
    """

    type: Literal["data_nack"] = "data_nack"
    session_id: UuidStr
    first_seq: Count
    count: Count
    code: ErrorKind
    reason: LongText = ""


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class CueDirection(enum.StrEnum):
    """Which way the trainee should correct the parameter."""

    INCREASE = "increase"
    DECREASE = "decrease"
    HOLD = "hold"  # back in the window: keep it there
    NONE = "none"


class Cue(_Model):
    """Controller → rig: feedback for the trainee (e.g. "travel speed too high")."""

    type: Literal["cue"] = "cue"
    session_id: UuidStr
    parameter: ShortText  # rubric metric name, e.g. "travel_speed"
    direction: CueDirection
    message: ShortText = ""
    severity: Severity = Severity.WARNING
    value: FiniteFloat | None = None
    target_low: FiniteFloat | None = None
    target_high: FiniteFloat | None = None
    ref_seq: Seq = -1  # sample the cue refers to (latency = arrival - that sample's rig time)
    ref_rig_time: FiniteFloat | None = None
    controller_time: FiniteFloat  # controller wall clock at send


class TimeSync(_Model):
    """Controller → rig: clock probe; t0 = controller wall clock at send."""

    type: Literal["time_sync"] = "time_sync"
    probe_id: Annotated[int, Field(ge=0, lt=2**63)]
    t0: FiniteFloat


class TimeSyncReply(_Model):
    """Rig → controller: t1 = rig clock at receipt, t2 = rig clock at reply; t3 is taken there."""

    type: Literal["time_sync_reply"] = "time_sync_reply"
    probe_id: Annotated[int, Field(ge=0, lt=2**63)]
    t0: FiniteFloat
    t1: FiniteFloat
    t2: FiniteFloat


class EndReason(enum.StrEnum):
    STOPPED = "stopped"
    ABORTED = "aborted"
    FINISHED = "finished"  # the exercise ended by itself (driver finished / duration reached)
    ERROR = "error"  # the driver failed


class EndOfStream(_Model):
    """Rig → controller: no sample of this session after last_seq will ever be produced.

    Re-sent until END_OF_STREAM_ACK (the ipc tail-loss lesson: never close right after sending).
    """

    type: Literal["end_of_stream"] = "end_of_stream"
    session_id: UuidStr
    last_seq: Seq  # -1 when the session produced no sample
    reason: EndReason
    rig_time: FiniteFloat
    detail: LongText = ""


class EndOfStreamAck(_Model):
    """Controller → rig: all samples 0..last_seq are durable; the rig may forget the session."""

    type: Literal["end_of_stream_ack"] = "end_of_stream_ack"
    session_id: UuidStr
    durable_seq: Seq


class Error(_Model):
    """Either way: the message you sent could not be used. Its shape is frozen across versions."""

    type: Literal["error"] = "error"
    code: ErrorKind
    detail: LongText = ""
    version: str = PROTOCOL_VERSION  # the version the sender of this ERROR speaks
    ref_type: ShortText = ""  # the ``type`` of the refused message, when it could be read
    command_id: UuidStr | None = None  # when the refused message carried one


# ── instructor API (client REQ/DEALER → controller ROUTER, same prologue and JSON framing) ──


class _ApiRequest(_Model):
    request_id: Annotated[str, Field(max_length=64)] = ""  # echoed in the reply


class ApiRigs(_ApiRequest):
    """List rigs (the `labctl rigs` table)."""

    type: Literal["api.rigs"] = "api.rigs"


class ApiSessionStart(_ApiRequest):
    """Start one session on one rig."""

    type: Literal["api.session_start"] = "api.session_start"
    rig_id: RigId
    exercise_id: ShortText
    trainee: ShortText
    rubric_version: ShortText = ""
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    params: dict[str, Any] = {}


class ApiSessionStop(_ApiRequest):
    type: Literal["api.session_stop"] = "api.session_stop"
    session_id: UuidStr
    reason: ShortText = ""


class ApiSessionAbort(_ApiRequest):
    type: Literal["api.session_abort"] = "api.session_abort"
    session_id: UuidStr
    reason: ShortText = ""


class ApiSessionShow(_ApiRequest):
    type: Literal["api.session_show"] = "api.session_show"
    session_id: UuidStr


class ApiSessions(_ApiRequest):
    """List sessions (optionally only the active ones)."""

    type: Literal["api.sessions"] = "api.sessions"
    active_only: bool = True


class ApiClassLaunch(_ApiRequest):
    """Start the same exercise on several rigs (or all idle ones), one trainee per rig."""

    type: Literal["api.class_launch"] = "api.class_launch"
    exercise_id: ShortText
    rigs: list[RigId] | None = None  # None: all idle rigs
    trainees: list[ShortText] = []  # same order as rigs (or as the idle rigs, sorted by id)
    rubric_version: ShortText = ""
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    params: dict[str, Any] = {}


class ApiReply(_Model):
    """Controller → instructor: ``ok`` with ``data``, or an error code and text.

    ``data`` shapes are documented per request in docs/protocol.md ("Instructor API").
    """

    type: Literal["api.reply"] = "api.reply"
    request_id: Annotated[str, Field(max_length=64)] = ""
    ok: bool
    error_code: ShortText = ""
    error: LongText = ""
    data: dict[str, Any] = {}


RigToController: TypeAlias = Hello | Heartbeat | Ack | Nack | Status | TimeSyncReply | EndOfStream | Error
ControllerToRig: TypeAlias = (
    Welcome
    | Reject
    | Heartbeat
    | Start
    | Stop
    | Abort
    | DataAck
    | DataNack
    | Cue
    | TimeSync
    | EndOfStreamAck
    | Error
)
ApiRequest: TypeAlias = (
    ApiRigs
    | ApiSessionStart
    | ApiSessionStop
    | ApiSessionAbort
    | ApiSessionShow
    | ApiSessions
    | ApiClassLaunch
)
ControlMessage: TypeAlias = Annotated[
    Hello
    | Welcome
    | Reject
    | Heartbeat
    | Start
    | Stop
    | Abort
    | Ack
    | Nack
    | Status
    | DataAck
    | DataNack
    | Cue
    | TimeSync
    | TimeSyncReply
    | EndOfStream
    | EndOfStreamAck
    | Error
    | ApiRigs
    | ApiSessionStart
    | ApiSessionStop
    | ApiSessionAbort
    | ApiSessionShow
    | ApiSessions
    | ApiClassLaunch
    | ApiReply,
    Field(discriminator="type"),
]

_CONTROL_ADAPTER: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)
MESSAGE_TYPES: Final[frozenset[str]] = frozenset(
    m.model_fields["type"].default
    for m in (
        Hello,
        Welcome,
        Reject,
        Heartbeat,
        Start,
        Stop,
        Abort,
        Ack,
        Nack,
        Status,
        DataAck,
        DataNack,
        Cue,
        TimeSync,
        TimeSyncReply,
        EndOfStream,
        EndOfStreamAck,
        Error,
        ApiRigs,
        ApiSessionStart,
        ApiSessionStop,
        ApiSessionAbort,
        ApiSessionShow,
        ApiSessions,
        ApiClassLaunch,
        ApiReply,
    )
)


# ─────────────────────────────────────────────────────────────────────────────── control codec


def encode_control(msg: BaseModel) -> tuple[bytes, bytes]:
    """The two frames of a control message: prologue and compact JSON."""
    body = msg.model_dump_json(exclude_none=False).encode()
    if len(body) > MAX_CONTROL_BYTES:
        raise ProtocolError(ErrorKind.OVERSIZED, f"{len(body)} byte control message")
    return _CONTROL_PROLOGUE, body


def encode_data_ack(session_id: str, durable_seq: int, received_seq: int) -> tuple[bytes, bytes]:
    """The frames of ``DataAck(session_id, durable_seq, received_seq)``, byte for byte what
    `encode_control` gives, without building the model: a controller sends one per session
    every 50 ms (~1 µs instead of ~4). ``session_id`` must already be a valid id (it comes
    from a session the controller created)."""
    return _CONTROL_PROLOGUE, (
        f'{{"type":"data_ack","session_id":"{session_id}","durable_seq":{int(durable_seq)},'
        f'"received_seq":{int(received_seq)}}}'
    ).encode()


# A DATA_ACK exactly as `encode_data_ack` writes it. The pattern admits only what
# `decode_control` accepts: UuidStr's characters and length, Seq from -1 up to 10**18 - 1
# (< 2**63; a longer number is left to `decode_control`).
_DATA_ACK_BODY = re.compile(
    rb'\{"type":"data_ack","session_id":"([0-9a-fA-F-]{32,36})",'
    rb'"durable_seq":(-1|0|[1-9][0-9]{0,17}),"received_seq":(-1|0|[1-9][0-9]{0,17})\}'
)


def parse_data_ack(frames: Sequence[bytes | memoryview]) -> tuple[str, int, int] | None:
    """(session_id, durable_seq, received_seq) of a DATA_ACK in exactly `encode_data_ack`'s
    form, else None — then `decode_control` decides (any other spelling, an error, another
    message). A rig reads a few per second and session: ~0.5 µs here, ~5 µs via the model."""
    if len(frames) != 2 or frames[0] != _CONTROL_PROLOGUE:
        return None
    m = _DATA_ACK_BODY.fullmatch(frames[1])
    if m is None:
        return None
    return m[1].decode(), int(m[2]), int(m[3])


def decode_control(frames: Sequence[bytes | memoryview]) -> ControlMessage:
    """Parse and validate a two-frame control message (routing frames already stripped)."""
    if len(frames) != 2:
        raise ProtocolError(ErrorKind.MALFORMED, f"{len(frames)} frames, a message has 2")
    f0 = frames[0]
    if len(f0) != PROLOGUE_SIZE or f0[:5] != _SIG or f0[6] != MessageClass.CONTROL:
        prologue = read_prologue(f0)  # raises the precise error if the prologue is bad
        if prologue.message_class is not MessageClass.CONTROL:
            raise ProtocolError(ErrorKind.UNKNOWN_TYPE, "sample chunk where a control message is due")
        raise ProtocolError(ErrorKind.MALFORMED, f"control frame 0 has {len(f0)} bytes")
    body = frames[1]
    if len(body) > MAX_CONTROL_BYTES:
        raise ProtocolError(ErrorKind.OVERSIZED, f"{len(body)} byte control message")
    try:
        # pydantic's own JSON parser: one pass, ~3x faster than json.loads + validate_python.
        return _CONTROL_ADAPTER.validate_json(body if isinstance(body, bytes) else bytes(body))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        etype, loc = first.get("type", ""), first.get("loc", ())
        if etype == "json_invalid" or (not loc and etype.endswith("_type")):
            raise ProtocolError(ErrorKind.MALFORMED, f"not a JSON object: {first.get('msg')}") from None
        if etype == "union_tag_not_found":
            raise ProtocolError(ErrorKind.MALFORMED, "no 'type' field") from None
        if etype == "union_tag_invalid":
            mtype = peek_type(body)
            if not mtype:
                raise ProtocolError(ErrorKind.MALFORMED, "'type' is not a string") from None
            raise ProtocolError(ErrorKind.UNKNOWN_TYPE, f"type {mtype[:40]!r}") from None
        where = ".".join(str(p) for p in loc)
        raise ProtocolError(ErrorKind.INVALID, f"{where}: {first.get('msg')}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # defensive: never leak another type
        raise ProtocolError(ErrorKind.INVALID, str(exc)[:200]) from None


def peek_type(body: bytes | memoryview) -> str:
    """Best-effort ``type`` of a JSON frame that failed to decode ('' if unreadable)."""
    try:
        raw = json.loads(bytes(body))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ""
    mtype = raw.get("type") if isinstance(raw, dict) else None
    return mtype[:64] if isinstance(mtype, str) else ""


def error_for(exc: ProtocolError, ref_type: str = "") -> Error:
    """The ERROR reply a receiver sends for a refused message where the peer waits."""
    return Error(code=exc.kind, detail=exc.detail[:4096], ref_type=ref_type[:256])


def data_endpoint_for(control_endpoint: str) -> str:
    """Default data endpoint of a controller: tcp port + 1, or ipc path + ``.data``."""
    if control_endpoint.startswith("ipc://") or control_endpoint.startswith("inproc://"):
        return control_endpoint + ".data"
    host, sep, port = control_endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"cannot derive a data endpoint from {control_endpoint!r}")
    return f"{host}:{int(port) + 1}"


# ─────────────────────────────────────────────────────────────────────────────── channel layout


@dataclass(frozen=True, slots=True)
class ChannelLayout:
    """What one sample holds: the trackers (7 floats each) then the analog channels."""

    trackers: tuple[str, ...]
    roles: tuple[str, ...]
    analog: tuple[str, ...]
    layout_id: int

    @property
    def n_trackers(self) -> int:
        return len(self.trackers)

    @property
    def n_analog(self) -> int:
        return len(self.analog)

    @property
    def floats_per_sample(self) -> int:
        return self.n_trackers * POSE_WIDTH + self.n_analog

    @property
    def mask_bytes_per_sample(self) -> int:
        return (self.n_trackers + 7) // 8


def layout_id_for(trackers: Sequence[tuple[str, str]], analog: Sequence[str]) -> int:
    """CRC-32 of the canonical declaration ``"T:name=role,...;A:a,b"`` (docs/protocol.md)."""
    text = "T:" + ",".join(f"{n}={r}" for n, r in trackers) + ";A:" + ",".join(analog)
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


def make_layout(trackers: Sequence[tuple[str, str]], analog: Sequence[str] = ()) -> ChannelLayout:
    """Layout from (name, role) pairs and analog names, with its id."""
    trackers = [(str(n), str(r)) for n, r in trackers]
    return ChannelLayout(
        trackers=tuple(n for n, _ in trackers),
        roles=tuple(r for _, r in trackers),
        analog=tuple(analog),
        layout_id=layout_id_for(trackers, analog),
    )


def layout_from_hello(hello: Hello) -> ChannelLayout:
    """The layout a HELLO declares; ``ProtocolError(bad_layout)`` if its layout_id disagrees."""
    layout = make_layout([(t.name, t.role.value) for t in hello.trackers], hello.analog)
    if layout.layout_id != hello.layout_id:
        raise ProtocolError(
            ErrorKind.BAD_LAYOUT,
            f"HELLO layout_id {hello.layout_id:#010x}, declaration gives {layout.layout_id:#010x}",
        )
    if len(set(layout.trackers)) != len(layout.trackers):
        raise ProtocolError(ErrorKind.INVALID, "duplicate tracker names")
    if len(set(layout.analog)) != len(layout.analog):
        raise ProtocolError(ErrorKind.INVALID, "duplicate analog channel names")
    return layout


# ─────────────────────────────────────────────────────────────────────────────── sample chunks

F32Array: TypeAlias = npt.NDArray[np.float32]
BoolArray: TypeAlias = npt.NDArray[np.bool_]


@dataclass(slots=True)
class ChunkHeader:
    """The fixed fields of a chunk (frame 0 after the prologue). Treat as read-only.

    (Not ``frozen``: a frozen dataclass's ``__init__`` costs several µs per chunk.)
    """

    rig_handle: int
    layout_id: int
    session: bytes  # the session UUID's 16 raw bytes (cheap dictionary key)
    first_seq: int
    count: int
    flags: int  # `ChunkFlags` bits
    rig_time_first: float
    period: float

    @property
    def session_id(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.session)

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


@dataclass(slots=True)
class SampleChunk:
    """A decoded chunk. Arrays are read-only views of the received frames (no copy).

    ``poses``: (n, T, 7) float32, mm and scalar-last quaternion; ``analog``: (n, A) float32;
    ``valid``: (n, T) bool, False where the tracker was lost (its pose row holds NaN).
    """

    header: ChunkHeader
    poses: F32Array
    analog: F32Array
    valid: BoolArray

    @property
    def session_id(self) -> uuid.UUID:
        return self.header.session_id

    @property
    def first_seq(self) -> int:
        return self.header.first_seq

    @property
    def last_seq(self) -> int:
        return self.header.last_seq

    @property
    def count(self) -> int:
        return self.header.count

    def rig_times(self) -> npt.NDArray[np.float64]:
        """Rig clock of every sample: first + i × period."""
        steps = np.arange(self.count, dtype=np.float64)
        return np.asarray(self.header.rig_time_first + steps * self.header.period, np.float64)


def parse_chunk_header(frame0: bytes | memoryview) -> ChunkHeader:
    """Read the fixed header (cheap: lets the receiver find the rig and layout first)."""
    if len(frame0) < CHUNK_HEADER_SIZE or frame0[:5] != _SIG or frame0[6] != 0x44:
        prologue = read_prologue(frame0)  # raises the precise error if the prologue is bad
        if prologue.message_class is not MessageClass.CHUNK:
            raise ProtocolError(ErrorKind.UNKNOWN_TYPE, "control message where a chunk is due")
        raise ProtocolError(ErrorKind.MALFORMED, f"chunk header has {len(frame0)} bytes, need 64")
    (_m, _ma, _mi, _c, _r, handle, layout_id, sid, first, count, flags, t0, period) = (
        CHUNK_HEADER.unpack_from(frame0, 0)
    )
    if count < 1 or count > MAX_SAMPLES_PER_CHUNK:
        raise ProtocolError(ErrorKind.INVALID, f"sample count {count}")
    if first >= 2**63 - count:
        raise ProtocolError(ErrorKind.INVALID, f"first_seq {first} out of range")
    if flags & ~_KNOWN_FLAGS:
        raise ProtocolError(ErrorKind.INVALID, f"unknown flag bits {flags:#x}")
    if not (math.isfinite(t0) and math.isfinite(period)):
        raise ProtocolError(ErrorKind.NON_FINITE, "rig time or period not finite")
    if period <= 0.0:
        raise ProtocolError(ErrorKind.INVALID, f"sample period {period}")
    if handle == 0:
        raise ProtocolError(ErrorKind.INVALID, "rig handle 0 (not registered)")
    return ChunkHeader(handle, layout_id, bytes(sid), first, count, flags, t0, period)


def decode_chunk(
    frames: Sequence[bytes | memoryview],
    layout: ChannelLayout,
    header: ChunkHeader | None = None,
    *,
    finite_checked: bool = False,
) -> SampleChunk:
    """Validate a two-frame chunk against the rig's declared layout and return numpy views.

    Checks: layout id, mask length, buffer size, inf anywhere, NaN only where the mask says
    invalid, analog channels finite. Pass ``header`` if `parse_chunk_header` already ran, and
    ``finite_checked=True`` if `all_finite` already passed over this chunk's sample frame (a
    receiver checks a whole batch of chunks without a mask at once; chunks with a mask are
    always checked here, since their NaNs must sit where the mask says).
    """
    if len(frames) != 2:
        raise ProtocolError(ErrorKind.MALFORMED, f"{len(frames)} frames, a message has 2")
    frame0, frame1 = frames
    if header is None:
        header = parse_chunk_header(frame0)
    if header.layout_id != layout.layout_id:
        raise ProtocolError(
            ErrorKind.BAD_LAYOUT,
            f"chunk layout {header.layout_id:#010x}, rig declared {layout.layout_id:#010x}",
        )
    n, t, a = header.count, layout.n_trackers, layout.n_analog
    has_mask = header.flags & _MASK_BIT
    mask_len = n * layout.mask_bytes_per_sample if has_mask else 0
    if len(frame0) != CHUNK_HEADER_SIZE + mask_len:
        raise ProtocolError(
            ErrorKind.BAD_SIZE,
            f"frame 0 has {len(frame0)} bytes, header + mask need {CHUNK_HEADER_SIZE + mask_len}",
        )
    n_floats = n * layout.floats_per_sample
    if len(frame1) > MAX_CHUNK_BYTES:
        raise ProtocolError(ErrorKind.OVERSIZED, f"{len(frame1)} byte sample frame")
    if len(frame1) != n_floats * 4:
        raise ProtocolError(
            ErrorKind.BAD_SIZE,
            f"{len(frame1)} sample bytes, {n}×({t}×7+{a}) floats need {n_floats * 4}",
        )
    flat = np.frombuffer(frame1, dtype=_F32)
    n_pose = n * t * POSE_WIDTH
    poses = flat[:n_pose].reshape(n, t, POSE_WIDTH)
    analog = flat[n_pose:].reshape(n, a)
    if not has_mask:
        # 0·x is 0 for finite x and NaN for ±inf/NaN: one BLAS dot checks the whole frame.
        if not finite_checked and not _finite(flat):
            raise ProtocolError(ErrorKind.NON_FINITE, "non-finite value (no validity mask sent)")
        return SampleChunk(header, poses, analog, _all_valid(n, t))
    bits = np.frombuffer(frame0, dtype=np.uint8, count=mask_len, offset=CHUNK_HEADER_SIZE)
    valid = np.unpackbits(
        bits.reshape(n, layout.mask_bytes_per_sample), axis=1, count=t, bitorder="little"
    ).astype(np.bool_)
    if not np.isfinite(poses[valid]).all():
        raise ProtocolError(ErrorKind.NON_FINITE, "non-finite pose value of a valid tracker")
    if np.isinf(poses).any():
        raise ProtocolError(ErrorKind.NON_FINITE, "infinite pose value")
    if a and not np.isfinite(analog).all():
        raise ProtocolError(ErrorKind.NON_FINITE, "non-finite analog value")
    valid.flags.writeable = False
    return SampleChunk(header, poses, analog, valid)


def decode_plain_chunk(header: ChunkHeader, frame1: bytes, layout: ChannelLayout
                       ) -> SampleChunk | None:
    """`decode_chunk`'s common case for a receiver's fast path: a chunk without flags (no
    mask, not a resend, not the last) whose frame 0 is exactly the 64-byte header and whose
    sample frame `all_finite` has already passed. Returns None whenever anything else applies
    (layout mismatch, wrong size, any flag): then `decode_chunk` must run and give the error."""
    n = header.count
    if header.flags or header.layout_id != layout.layout_id:
        return None
    t, a = len(layout.trackers), len(layout.analog)
    n_pose = n * t * POSE_WIDTH
    if len(frame1) != 4 * (n_pose + n * a):
        return None
    # two read-only views straight onto the frame (one call each; frombuffer + slice +
    # reshape made five numpy objects: ~1 µs more per chunk)
    return SampleChunk(header, np.ndarray((n, t, POSE_WIDTH), _F32, frame1),
                       np.ndarray((n, a), _F32, frame1, 4 * n_pose), _all_valid(n, t))


def all_finite(sample_frames: Sequence[bytes]) -> bool:
    """True if every float32 in these chunks' sample frames is finite (one pass for a batch:
    ~3 µs per chunk checked one by one, ~0.1 µs per chunk in a batch of 100)."""
    if not sample_frames:
        return True
    joined = b"".join(sample_frames)
    if len(joined) % 4:
        return False
    return _finite(np.frombuffer(joined, dtype=_F32))


_ALL_VALID_CACHE: dict[tuple[int, int], BoolArray] = {}


def _all_valid(n: int, t: int) -> BoolArray:
    """Shared read-only all-True mask (chunks without a mask are the common case)."""
    key = (n, t)
    arr = _ALL_VALID_CACHE.get(key)
    if arr is None:
        arr = np.ones((n, t), dtype=np.bool_)
        arr.flags.writeable = False
        if len(_ALL_VALID_CACHE) < 256:
            _ALL_VALID_CACHE[key] = arr
    return arr


_ZEROS: dict[np.dtype[Any], npt.NDArray[Any]] = {}


def _zeros(n: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """A read-only zero vector of length ``n`` (grown on demand, shared per dtype)."""
    z = _ZEROS.get(dtype)
    if z is None or z.shape[0] < n:
        z = np.zeros(max(n, 4096, 0 if z is None else 2 * z.shape[0]), dtype=dtype)
        z.flags.writeable = False
        _ZEROS[dtype] = z
    return z[:n]


_CHUNK_PREFIX = struct.Struct("<4sBBBBII16s")  # frame 0 bytes 0-31: the stream's constant part
_CHUNK_REST = struct.Struct("<QIIdd")  # bytes 32-63: first_seq, count, flags, rig time, period
assert _CHUNK_PREFIX.size + _CHUNK_REST.size == CHUNK_HEADER_SIZE


def chunk_prefix(rig_handle: int, layout: ChannelLayout, session_id: uuid.UUID | bytes) -> bytes:
    """Frame 0 bytes 0-31 (prologue, rig handle, layout id, session id): the same for every
    chunk of one session sent under one rig handle. A rig keeps it per stream and passes it to
    `encode_checked_chunk`."""
    sid = session_id if isinstance(session_id, bytes) else session_id.bytes
    if len(sid) != 16:
        raise ProtocolError(ErrorKind.INVALID, "session id must be 16 bytes")
    return _CHUNK_PREFIX.pack(MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR, MessageClass.CHUNK, 0,
                              rig_handle, layout.layout_id, sid)


def encode_checked_chunk(
    prefix: bytes,
    layout: ChannelLayout,
    first_seq: int,
    rig_time_first: float,
    period: float,
    poses: F32Array,
    analog: F32Array | None,
    valid: BoolArray | None,
    flags: int = 0,
) -> tuple[bytes, bytes]:
    """The two frames of a chunk whose values the caller has already verified (poses NaN
    exactly where ``valid`` is False and finite elsewhere, analog finite), with ``prefix``
    from `chunk_prefix`. Shapes and header fields are checked. `encode_chunk` ends here too;
    a rig calling this directly saves the per-chunk prefix and keyword handling (~3x cheaper
    for a 20 ms chunk)."""
    p = poses if isinstance(poses, np.ndarray) else np.asarray(poses)
    n = p.shape[0] if p.ndim == 3 else 0
    t, a = layout.n_trackers, layout.n_analog
    if p.shape != (n, t, POSE_WIDTH) or not 1 <= n <= MAX_SAMPLES_PER_CHUNK:
        raise ProtocolError(ErrorKind.BAD_SIZE, f"poses shape {p.shape}, layout has {t} trackers")
    if analog is None:
        if a:
            raise ProtocolError(ErrorKind.BAD_SIZE, f"analog missing, layout has {a} channels")
        an_bytes = b""
    else:
        an = analog if isinstance(analog, np.ndarray) else np.asarray(analog)
        if an.shape != (n, a):
            raise ProtocolError(ErrorKind.BAD_SIZE, f"analog shape {an.shape}, want {(n, a)}")
        an_bytes = _f32_bytes(an) if a else b""
    flags = int(flags) & ~_MASK_BIT
    mask = b""
    if valid is not None:
        v = valid if isinstance(valid, np.ndarray) and valid.dtype == np.bool_ else np.asarray(
            valid, dtype=np.bool_)
        if v.shape != (n, t):
            raise ProtocolError(ErrorKind.BAD_SIZE, f"valid shape {v.shape}, want {(n, t)}")
        if not v.all():
            flags |= _MASK_BIT
            mask = np.packbits(v, axis=1, bitorder="little").tobytes()
    if not (math.isfinite(rig_time_first) and math.isfinite(period)) or period <= 0:
        raise ProtocolError(ErrorKind.INVALID, "rig time / period must be finite, period > 0")
    rest = _CHUNK_REST.pack(first_seq, n, flags, rig_time_first, period)
    return prefix + rest + mask, _f32_bytes(p) + an_bytes


def encode_chunk(
    *,
    rig_handle: int,
    layout: ChannelLayout,
    session_id: uuid.UUID | bytes,
    first_seq: int,
    rig_time_first: float,
    period: float,
    poses: F32Array,
    analog: F32Array | None = None,
    valid: BoolArray | None = None,
    flags: int = 0,
    checked: bool = False,
) -> tuple[bytes, bytes]:
    """The two frames of a chunk. Invalid tracker samples are written as NaN.

    ``poses`` (n, T, 7), ``analog`` (n, A), ``valid`` (n, T) or None for all valid;
    ``session_id`` as a UUID or its 16 bytes. Raises `ProtocolError` for anything the decoder
    would refuse, so a rig never sends it.

    ``checked=True``: the caller has already verified the values (e.g. once for a long block
    it now sends in slices): poses NaN exactly where ``valid`` is False and finite elsewhere,
    analog finite. Shapes and header fields are still checked; the per-value scans and the
    NaN-writing copy are skipped (~3x cheaper for a 20 ms chunk; `encode_checked_chunk` with a
    kept `chunk_prefix` is cheaper still).
    """
    prefix = chunk_prefix(rig_handle, layout, session_id)
    if not checked:
        p = poses if isinstance(poses, np.ndarray) else np.asarray(poses)
        n = p.shape[0] if p.ndim == 3 else 0
        t, a = layout.n_trackers, layout.n_analog
        if p.shape != (n, t, POSE_WIDTH) or not 1 <= n <= MAX_SAMPLES_PER_CHUNK:
            raise ProtocolError(ErrorKind.BAD_SIZE,
                                f"poses shape {p.shape}, layout has {t} trackers")
        if analog is None:
            if a:
                raise ProtocolError(ErrorKind.BAD_SIZE, f"analog missing, layout has {a} channels")
        else:
            an = np.asarray(analog)
            if an.shape != (n, a):
                raise ProtocolError(ErrorKind.BAD_SIZE, f"analog shape {an.shape}, want {(n, a)}")
            if a and not _finite(an):
                raise ProtocolError(ErrorKind.NON_FINITE, "non-finite analog value")
        v = None if valid is None else np.asarray(valid, dtype=np.bool_)
        if v is not None and v.shape != (n, t):
            raise ProtocolError(ErrorKind.BAD_SIZE, f"valid shape {v.shape}, want {(n, t)}")
        if v is None or v.all():
            if not _finite(p):
                raise ProtocolError(ErrorKind.NON_FINITE,
                                    "non-finite pose of a tracker marked valid")
        else:
            if not np.isfinite(p[v]).all():
                raise ProtocolError(ErrorKind.NON_FINITE,
                                    "non-finite pose of a tracker marked valid")
            p = np.array(p, dtype=_F32)  # copy: we write NaN into lost trackers
            p[~v] = np.nan
        poses, valid = p, v
    return encode_checked_chunk(prefix, layout, first_seq, rig_time_first, period, poses,
                                analog, valid, flags)


def _finite(arr: npt.NDArray[Any]) -> bool:
    """All values finite: one dot product with zeros (0·x is NaN only for ±inf and NaN).

    3x cheaper than ``np.isfinite(arr).all()`` on chunk-sized arrays; numpy's "invalid value"
    warning that 0·inf raises is silenced for this module only (see the filter below).
    """
    flat = arr.reshape(-1)
    return math.isfinite(float(flat.dot(_zeros(flat.shape[0], flat.dtype))))


# 0·inf in `_finite` sets the FP "invalid" flag and numpy warns; that is the expected outcome
# of a bad chunk (counted as non_finite), not a bug. np.errstate would cost more than the check.
warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning, r"lab_controller\.protocol")


def _f32_bytes(arr: npt.NDArray[Any]) -> bytes:
    """Little-endian float32 bytes of ``arr`` in C order (no copy beyond the bytes object)."""
    if arr.dtype != _F32 or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=_F32)
    return arr.tobytes()


_HANDLE = struct.Struct("<I")


def patch_chunk(frame0: bytes, *, rig_handle: int | None = None, add_flags: int = 0) -> bytes:
    """A copy of an encoded chunk's frame 0 with a new rig handle and/or extra flags.

    A rig re-registered after a reconnect gets a new handle; its kept chunks are re-sent with it
    (and the RESEND flag).
    """
    handle = _HANDLE.unpack_from(frame0, 8)[0] if rig_handle is None else rig_handle
    (flags,) = _HANDLE.unpack_from(frame0, 44)
    return frame0[:8] + _HANDLE.pack(handle) + frame0[12:44] + _HANDLE.pack(flags | add_flags) + frame0[48:]


def merge_chunks(
    a: tuple[bytes, bytes], b: tuple[bytes, bytes], layout: ChannelLayout, max_samples: int
) -> tuple[bytes, bytes] | None:
    """One chunk holding chunk ``a`` then chunk ``b``, or None if they cannot be joined.

    Joinable: same rig handle, layout, session and period, ``b`` starts right after ``a`` in
    sequence and in rig time (within 1% of a period), and together at most ``max_samples``.
    Used by a rig re-sending a backlog: fewer, larger messages cost both ends less per sample.
    """
    ha, hb = parse_chunk_header(a[0]), parse_chunk_header(b[0])
    if (
        ha.rig_handle != hb.rig_handle
        or ha.layout_id != layout.layout_id
        or hb.layout_id != layout.layout_id
        or ha.session != hb.session
        or ha.period != hb.period
        or hb.first_seq != ha.first_seq + ha.count
        or ha.count + hb.count > min(max_samples, MAX_SAMPLES_PER_CHUNK)
        or abs(hb.rig_time_first - (ha.rig_time_first + ha.count * ha.period)) > 0.01 * ha.period
    ):
        return None
    t, a_n = layout.n_trackers, layout.n_analog
    pa, pb = ha.count * t * POSE_WIDTH * 4, hb.count * t * POSE_WIDTH * 4
    if len(a[1]) != pa + ha.count * a_n * 4 or len(b[1]) != pb + hb.count * a_n * 4:
        return None
    flags = (ha.flags | hb.flags) & ~ChunkFlags.MASK
    mask = b""
    if (ha.flags | hb.flags) & ChunkFlags.MASK:
        flags |= ChunkFlags.MASK
        full = _full_mask(t)
        mask = (a[0][CHUNK_HEADER_SIZE:] if ha.flags & ChunkFlags.MASK else full * ha.count) + (
            b[0][CHUNK_HEADER_SIZE:] if hb.flags & ChunkFlags.MASK else full * hb.count
        )
    header = CHUNK_HEADER.pack(
        MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR, MessageClass.CHUNK, 0, ha.rig_handle,
        ha.layout_id, ha.session, ha.first_seq, ha.count + hb.count, flags, ha.rig_time_first,
        ha.period,
    )  # fmt: skip
    body = a[1][:pa] + b[1][:pb] + a[1][pa:] + b[1][pb:]
    return header + mask, body


def _full_mask(n_trackers: int) -> bytes:
    """The mask bytes of one sample whose trackers are all valid."""
    return np.packbits(np.ones((1, n_trackers), np.bool_), axis=1, bitorder="little").tobytes()
