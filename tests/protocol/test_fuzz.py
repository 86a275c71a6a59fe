"""Decoders fed random and mutated frames raise `ProtocolError` and nothing else."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab_controller import protocol as P

# The decoder's finiteness check is a dot product with zeros; for ±inf numpy warns "invalid
# value" (protocol.py silences it for its own module, but pytest re-enables all warnings).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

LAYOUT = P.make_layout([("torch", "tool"), ("hmd", "headset"), ("lh", "off_hand")], ["trigger"])
SID = uuid.uuid4()

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _good_chunk(valid_all: bool) -> list[bytes]:
    poses = np.arange(3 * 3 * 7, dtype=np.float32).reshape(3, 3, 7)
    valid = np.ones((3, 3), bool)
    if not valid_all:
        valid[1, 2] = False
    return list(
        P.encode_chunk(
            rig_handle=3,
            layout=LAYOUT,
            session_id=SID,
            first_seq=5,
            rig_time_first=1.0,
            period=1 / 120,
            poses=poses,
            analog=np.ones((3, 1), np.float32),
            valid=valid,
        )
    )


GOOD_CONTROL = [
    list(P.encode_control(m))
    for m in (
        P.Heartbeat(sender_time=1.0, state=P.RigState.RUNNING, session_id=str(SID), next_seq=3),
        P.Start(
            command_id=str(uuid.uuid4()),
            session_id=str(SID),
            exercise_id="e",
            trainee="t",
            scene={"a": [1, 2, {"b": None}]},
        ),
        P.DataAck(session_id=str(SID), durable_seq=10),
        P.Hello(
            rig_id="r",
            trackers=[P.TrackerSpec(name="torch", role=P.TrackerRole.TOOL)],
            rate_hz=90,
            layout_id=P.layout_id_for([("torch", "tool")], []),
            rig_time=0.0,
        ),
    )
]
GOOD_CHUNKS = [_good_chunk(True), _good_chunk(False)]


def _decode_any(frames: list[bytes]) -> object:
    """What a receiver does with an unknown message: dispatch on the prologue."""
    if frames and len(frames[0]) >= 8 and frames[0][6:7] == b"D":
        return P.decode_chunk(frames, LAYOUT)
    return P.decode_control(frames)


def _only_protocol_errors(frames: list[bytes]) -> None:
    for decode in (_decode_any, P.decode_control, lambda f: P.decode_chunk(f, LAYOUT)):
        try:
            decode(frames)
        except P.ProtocolError as exc:
            assert isinstance(exc.kind, P.ErrorKind)
    if frames:
        for parse in (P.read_prologue, P.parse_chunk_header):
            with contextlib.suppress(P.ProtocolError):
                parse(frames[0])


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_random_frames(frames: list[bytes]) -> None:
    _only_protocol_errors(frames)


@FUZZ
@given(
    st.lists(st.binary(max_size=200), min_size=1, max_size=3),
    st.sampled_from([b"LABP\x01\x00C\x00", b"LABP\x01\x00D\x00", b"LABP\x01\x05D\x00", b"LABP\x02\x00C\x00"]),
)
def test_random_frames_behind_a_valid_prologue(rest: list[bytes], prologue: bytes) -> None:
    _only_protocol_errors([prologue + rest[0], *rest[1:]])


@st.composite
def _mutated(draw: st.DrawFn) -> list[bytes]:
    frames = [bytearray(f) for f in draw(st.sampled_from(GOOD_CONTROL + GOOD_CHUNKS))]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(frames) - 1))
        f = frames[i]
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "drop", "dup"]))
        if op in ("flip", "set") and f:
            pos = draw(st.integers(0, len(f) - 1))
            f[pos] = (f[pos] ^ (1 << draw(st.integers(0, 7)))) if op == "flip" else draw(st.integers(0, 255))
        elif op == "truncate" and f:
            del f[draw(st.integers(0, len(f) - 1)) :]
        elif op == "extend":
            f.extend(draw(st.binary(min_size=1, max_size=16)))
        elif op == "drop" and len(frames) > 1:
            frames.pop(i)
        elif op == "dup":
            frames.append(bytearray(f))
    return [bytes(f) for f in frames]


@FUZZ
@given(_mutated())
def test_mutated_good_frames(frames: list[bytes]) -> None:
    _only_protocol_errors(frames)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _typed_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects with a real ``type`` and a random mix of real and random fields."""
    model = draw(st.sampled_from(sorted(P.MESSAGE_TYPES)))
    body = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "rig_id",
                    "session_id",
                    "command_id",
                    "durable_seq",
                    "trackers",
                    "rate_hz",
                    "layout_id",
                    "rig_time",
                    "t0",
                    "t1",
                    "t2",
                    "probe_id",
                    "code",
                    "state",
                    "scene",
                    "sender_time",
                    "last_seq",
                    "reason",
                    "x",
                ]
            ),
            _json,
            max_size=8,
        )
    )
    body["type"] = model
    return body


@FUZZ
@given(_typed_objects())
def test_random_json_of_known_types(body: dict[str, Any]) -> None:
    try:
        raw = json.dumps(body).encode()
    except ValueError:
        return
    _only_protocol_errors([b"LABP\x01\x00C\x00", raw])
