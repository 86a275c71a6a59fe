"""`parse_data_ack` (the rig's shortcut for the most frequent control message) reads what
`decode_control` reads, and nothing else."""

from __future__ import annotations

import uuid

import pytest

from lab_controller import protocol as P


@pytest.mark.parametrize("durable", [-1, 0, 7, 10**17, 2**63 - 1])
@pytest.mark.parametrize("received", [-1, 0, 9, 10**17])
def test_parse_data_ack_agrees_with_decode_control(durable: int, received: int) -> None:
    sid = str(uuid.uuid4())
    frames = list(P.encode_data_ack(sid, durable, received))
    msg = P.decode_control(frames)
    assert isinstance(msg, P.DataAck)
    got = P.parse_data_ack(frames)
    if durable < 10**18 and received < 10**18:
        assert got == (msg.session_id, msg.durable_seq, msg.received_seq)
    else:  # too long for the pattern: decode_control decides (here: accepts)
        assert got is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"data_ack","session_id":"%s","durable_seq":-2,"received_seq":0}',  # Seq < -1
        b'{"type":"data_ack","session_id":"%s","durable_seq":01,"received_seq":0}',  # not JSON
        b'{"type":"data_ack","session_id":"%s","durable_seq":1,"received_seq":0,"x":1}',
        b'{"type":"data_ack", "session_id":"%s","durable_seq":1,"received_seq":0}',
        b'{"type":"data_ack","session_id":"%s!","durable_seq":1,"received_seq":0}',
        b'{"type":"data_nack","session_id":"%s","durable_seq":1,"received_seq":0}',
    ],
)
def test_other_forms_go_through_decode_control(body: bytes) -> None:
    frames = [P.encode_data_ack(str(uuid.uuid4()), 0, 0)[0], body % str(uuid.uuid4()).encode()]
    assert P.parse_data_ack(frames) is None


def test_only_our_control_prologue() -> None:
    f0, f1 = P.encode_data_ack(str(uuid.uuid4()), 3, 3)
    assert P.parse_data_ack([f0, f1]) is not None
    assert P.parse_data_ack([f0[:5] + bytes([f0[5] + 1]) + f0[6:], f1]) is None  # other minor
    assert P.parse_data_ack([f0]) is None and P.parse_data_ack([f0, f1, b""]) is None
