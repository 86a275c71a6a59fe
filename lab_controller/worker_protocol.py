"""Scoring-worker wire protocol (docs/scoring-workers.md): the one place it is defined.

Every message is two ZeroMQ frames (after the ROUTER's identity frame on the pool side):
frame 0 = an 8-byte prologue (``LABW``, major, minor, 0, 0) followed by a UTF-8 JSON object
with a ``type``; frame 1 = a binary payload (sample arrays for ``chunk``, empty otherwise).
A message with another magic or major version is refused with an ``error`` reply. JSON floats
are finite: NaN travels as ``null`` (:func:`nan_to_null` / :func:`null_to_nan`).

Pool → worker: ``open``, ``chunk``, ``finish``, ``close``, ``heartbeat``.
Worker → pool: ``ready``, ``heartbeat``, ``scored``, ``final``, ``error``.

Imports nothing from the project (a leaf, like ``lab_controller.protocol``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"LABW"
MAJOR = 1
MINOR = 0
PROLOGUE = struct.Struct("<4sBBBB")
_PRO = PROLOGUE.pack(MAGIC, MAJOR, MINOR, 0, 0)

POOL_TYPES = frozenset({"open", "chunk", "finish", "close", "heartbeat"})
WORKER_TYPES = frozenset({"ready", "heartbeat", "scored", "final", "error"})

# 0.25 s beats, dead after 1 s of silence (4 missed): a killed worker's sessions move within
# ~1 s (performance.md: a killed process is seen by TCP in ms, a hung one only by beats).
HEARTBEAT_S = 0.25
DEAD_AFTER_S = 1.0


class WorkerProtocolError(ValueError):
    """A message that is not a valid scoring-worker message."""


def encode(msg: dict[str, Any], payload: bytes = b"") -> tuple[bytes, bytes]:
    """Two frames for ``msg`` (must have a ``type``) and its binary payload."""
    body = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
    return _PRO + body, payload


def decode(frames: Sequence[bytes]) -> tuple[dict[str, Any], bytes]:
    if len(frames) != 2:
        raise WorkerProtocolError(f"{len(frames)} frames, a message has 2")
    f0 = frames[0]
    if len(f0) < PROLOGUE.size:
        raise WorkerProtocolError("short frame 0")
    magic, major, _minor, _a, _b = PROLOGUE.unpack_from(f0)
    if magic != MAGIC:
        raise WorkerProtocolError("not a scoring-worker message")
    if major != MAJOR:
        raise WorkerProtocolError(f"major version {major}, this side speaks {MAJOR}")
    try:
        msg = json.loads(f0[PROLOGUE.size:])
    except ValueError as exc:
        raise WorkerProtocolError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise WorkerProtocolError("no 'type'")
    return msg, bytes(frames[1])


def pack_chunk(poses: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_]) -> bytes:
    """Payload of ``chunk``: float32 poses (n, trackers, 7) then uint8 valid (n, trackers)."""
    return (np.ascontiguousarray(poses, "<f4").tobytes()
            + np.ascontiguousarray(valid, np.uint8).tobytes())


def unpack_chunk(n: int, trackers: int, payload: bytes
                 ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    k = n * trackers
    if len(payload) != 29 * k:  # 7 float32 + 1 byte per tracker sample
        raise WorkerProtocolError(f"chunk payload {len(payload)} bytes for {n}x{trackers}")
    poses = np.frombuffer(payload, "<f4", 7 * k).reshape(n, trackers, 7)
    valid = np.frombuffer(payload, np.uint8, k, 28 * k).reshape(n, trackers).astype(bool)
    return poses, valid


def nan_to_null(v: float) -> float | None:
    return v if math.isfinite(v) else None


def null_to_nan(v: float | None) -> float:
    return math.nan if v is None else float(v)
