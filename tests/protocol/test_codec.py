"""Codec round trips and every refusal rule of docs/protocol.md, on real bytes."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

import numpy as np
import pytest

from lab_controller import protocol as P

# The decoder's finiteness check is a dot product with zeros; for ±inf numpy warns "invalid
# value" (protocol.py silences it for its own module, but pytest re-enables all warnings).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

LAYOUT = P.make_layout([("torch", "tool"), ("hmd", "headset")], ["trigger"])
SID = uuid.UUID("6f1c2a9e-3b4d-4e5f-8a7b-1c2d3e4f5a6b")
CMD = str(uuid.uuid4())


def _hello(**kw: Any) -> P.Hello:
    base: dict[str, Any] = dict(
        rig_id="rig-07",
        trackers=[
            P.TrackerSpec(name="torch", role=P.TrackerRole.TOOL),
            P.TrackerSpec(name="hmd", role=P.TrackerRole.HEADSET),
        ],
        rate_hz=120.0,
        analog=["trigger"],
        layout_id=LAYOUT.layout_id,
        rig_time=5120.5,
    )
    base.update(kw)
    return P.Hello(**base)


EXAMPLES: list[Any] = [
    _hello(),
    _hello(
        active_session=P.ActiveSession(
            session_id=str(SID), exercise_id="e", state=P.RigState.RUNNING, next_seq=7
        ),
        backlog=[P.BacklogEntry(session_id=str(SID), first_seq=3, last_seq=6, chunks=2)],
    ),
    P.Welcome(
        rig_id="rig-07",
        rig_handle=7,
        controller_id=str(uuid.uuid4()),
        server_time=1.5,
        resume=[P.ResumeEntry(session_id=str(SID), durable_seq=1439)],
    ),
    P.Reject(code=P.NackCode.NOT_ALLOWED, reason="key"),
    P.Heartbeat(sender_time=1.0, state=P.RigState.IDLE, trackers_valid=[True, False]),
    P.Start(
        command_id=CMD,
        session_id=str(SID),
        exercise_id="fillet",
        trainee="T-17",
        scene={"weld_line": [[0, 0, 0], [300, 0, 0]]},
        duration_s=60.0,
    ),
    P.Stop(command_id=CMD, session_id=str(SID)),
    P.Abort(command_id=CMD, session_id=str(SID), reason="fire drill"),
    P.Ack(command_id=CMD, rig_time=2.0, detail={"first_seq": 0}),
    P.Nack(command_id=CMD, code=P.NackCode.BUSY, reason="running"),
    P.Status(state=P.RigState.RUNNING, session_id=str(SID), next_seq=10),
    P.DataAck(session_id=str(SID), durable_seq=-1),
    P.DataNack(session_id=str(SID), first_seq=0, count=3, code=P.ErrorKind.BAD_SIZE),
    P.Cue(
        session_id=str(SID),
        parameter="travel_speed",
        direction=P.CueDirection.DECREASE,
        controller_time=3.0,
        ref_seq=100,
        ref_rig_time=5.0,
    ),
    P.TimeSync(probe_id=1, t0=1.0),
    P.TimeSyncReply(probe_id=1, t0=1.0, t1=2.0, t2=2.1),
    P.EndOfStream(session_id=str(SID), last_seq=99, reason=P.EndReason.STOPPED, rig_time=9.0),
    P.EndOfStreamAck(session_id=str(SID), durable_seq=99),
    P.Error(code=P.ErrorKind.MALFORMED, detail="x"),
    P.ApiRigs(request_id="r1"),
    P.ApiSessionStart(rig_id="rig-07", exercise_id="fillet", trainee="T-17"),
    P.ApiSessionStop(session_id=str(SID)),
    P.ApiSessionAbort(session_id=str(SID)),
    P.ApiSessionShow(session_id=str(SID)),
    P.ApiSessions(),
    P.ApiClassLaunch(exercise_id="fillet", rigs=["rig-01", "rig-02"], trainees=["a", "b"]),
    P.ApiReply(request_id="r1", ok=True, data={"rigs": []}),
]


def test_every_message_type_has_an_example() -> None:
    assert {m.type for m in EXAMPLES} == P.MESSAGE_TYPES


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: m.type)
def test_control_round_trip(msg: Any) -> None:
    f0, f1 = P.encode_control(msg)
    assert f0 == b"LABP\x01\x00C\x00"
    assert json.loads(f1)["type"] == msg.type
    assert P.decode_control([f0, f1]) == msg


def test_unknown_fields_are_ignored_and_newer_minor_is_accepted() -> None:
    _f0, f1 = P.encode_control(P.TimeSync(probe_id=3, t0=1.0))
    body = json.loads(f1)
    body["added_in_1_7"] = {"x": 1}
    newer = b"LABP\x01\x07C\x00"
    msg = P.decode_control([newer, json.dumps(body).encode()])
    assert msg == P.TimeSync(probe_id=3, t0=1.0)


@pytest.mark.parametrize(
    ("frames", "kind"),
    [
        ([b"LABP\x01\x00C\x00"], P.ErrorKind.MALFORMED),
        ([b"LABP\x01\x00C\x00", b"{}", b"x"], P.ErrorKind.MALFORMED),
        ([b"LAB", b"{}"], P.ErrorKind.MALFORMED),
        ([b"XXXX\x01\x00C\x00", b"{}"], P.ErrorKind.MALFORMED),
        ([b"LABP\x02\x00C\x00", b'{"type":"heartbeat","sender_time":1}'], P.ErrorKind.BAD_VERSION),
        ([b"LABP\x00\x09C\x00", b"{}"], P.ErrorKind.BAD_VERSION),
        ([b"LABP\x01\x00Z\x00", b"{}"], P.ErrorKind.UNKNOWN_TYPE),
        ([b"LABP\x01\x00D\x00", b"{}"], P.ErrorKind.UNKNOWN_TYPE),
        ([b"LABP\x01\x00C\x00extra", b"{}"], P.ErrorKind.MALFORMED),
        ([b"LABP\x01\x00C\x00", b"\xff\xfe"], P.ErrorKind.MALFORMED),
        ([b"LABP\x01\x00C\x00", b"[1, 2]"], P.ErrorKind.MALFORMED),
        ([b"LABP\x01\x00C\x00", b'{"type": 5}'], P.ErrorKind.MALFORMED),
        ([b"LABP\x01\x00C\x00", b'{"type": "launch_missiles"}'], P.ErrorKind.UNKNOWN_TYPE),
        ([b"LABP\x01\x00C\x00", b'{"type": "heartbeat"}'], P.ErrorKind.INVALID),
        ([b"LABP\x01\x00C\x00", b'{"type": "heartbeat", "sender_time": NaN}'], P.ErrorKind.INVALID),
        ([b"LABP\x01\x00C\x00", b'{"type": "heartbeat", "sender_time": 1e999}'], P.ErrorKind.INVALID),
        (
            [b"LABP\x01\x00C\x00", b'{"type": "data_ack", "session_id": "nope", "durable_seq": 1}'],
            P.ErrorKind.INVALID,
        ),
        (
            [
                b"LABP\x01\x00C\x00",
                b'{"type": "data_ack", "session_id": "' + str(SID).encode() + b'", "durable_seq": -2}',
            ],
            P.ErrorKind.INVALID,
        ),
        ([b"LABP\x01\x00C\x00", b"[" * 100_000], P.ErrorKind.MALFORMED),
        ([b"LABP\x01\x00C\x00", b" " * (P.MAX_CONTROL_BYTES + 1)], P.ErrorKind.OVERSIZED),
    ],
)
def test_control_refusals(frames: list[bytes], kind: P.ErrorKind) -> None:
    with pytest.raises(P.ProtocolError) as info:
        P.decode_control(frames)
    assert info.value.kind is kind


def test_error_reply_is_readable_by_any_version() -> None:
    try:
        P.decode_control([b"LABP\x02\x00C\x00", b"{}"])
    except P.ProtocolError as exc:
        reply = P.error_for(exc, "hello")
    _f0, f1 = P.encode_control(reply)
    body = json.loads(f1)
    assert body["type"] == "error" and body["code"] == "bad_version" and body["version"] == "1.0"
    assert body["ref_type"] == "hello"


def test_hello_layout_must_match_declaration() -> None:
    assert P.layout_from_hello(_hello()) == LAYOUT
    with pytest.raises(P.ProtocolError) as info:
        P.layout_from_hello(_hello(layout_id=LAYOUT.layout_id ^ 1))
    assert info.value.kind is P.ErrorKind.BAD_LAYOUT


def test_layout_id_matches_the_documented_example() -> None:
    # docs/protocol.md §6.3
    assert LAYOUT.layout_id == 0x0C722C28 == 208809000
    assert LAYOUT.floats_per_sample == 2 * 7 + 1


def _doc_chunk() -> tuple[bytes, bytes]:
    poses = np.array(
        [
            [[100, 1200, -50, 0, 0, 0, 1], [0, 1700, 0, 0, 0.7071, 0, 0.7071]],
            [[101, 1200, -50, 0, 0, 0, 1], [np.nan] * 7],
        ],
        np.float32,
    )
    valid = np.array([[1, 1], [1, 0]], bool)
    return P.encode_chunk(
        rig_handle=7,
        layout=LAYOUT,
        session_id=SID,
        first_seq=240,
        rig_time_first=5123.25,
        period=1 / 120,
        poses=poses,
        analog=np.array([[0.0], [1.0]], np.float32),
        valid=valid,
    )


def test_chunk_bytes_match_the_documented_example() -> None:
    f0, f1 = _doc_chunk()
    doc = bytes.fromhex(
        "4c414250 01004400 07000000 282c720c"
        "6f1c2a9e 3b4d4e5f 8a7b1c2d 3e4f5a6b"
        "f0000000 00000000 02000000 01000000"
        "00000000 4003b440 11111111 1111813f"
        "0301"
    )
    assert f0 == doc
    assert len(f1) == 120 and f1[:12] == bytes.fromhex("0000c842 00009644 000048c2")
    assert P.CHUNK_HEADER_SIZE == 64


def test_chunk_round_trip_with_mask_and_analog() -> None:
    f0, f1 = _doc_chunk()
    c = P.decode_chunk([f0, f1], LAYOUT)
    assert c.header.session_id == SID and c.first_seq == 240 and c.count == 2 and c.last_seq == 241
    assert c.header.rig_handle == 7 and c.header.flags == P.ChunkFlags.MASK
    assert c.valid.tolist() == [[True, True], [True, False]]
    assert np.isnan(c.poses[1, 1]).all() and np.isfinite(c.poses[c.valid]).all()
    assert c.analog[:, 0].tolist() == [0.0, 1.0]
    assert c.rig_times() == pytest.approx([5123.25, 5123.25 + 1 / 120])
    assert not c.poses.flags.writeable  # views of the received frame


def test_chunk_round_trip_without_mask_and_without_analog() -> None:
    layout = P.make_layout([("a", "tool")] + [(f"t{i}", "other") for i in range(10)])
    rng = np.random.default_rng(1)
    poses = rng.normal(size=(5, 11, 7)).astype(np.float32)
    f0, f1 = P.encode_chunk(
        rig_handle=1, layout=layout, session_id=SID, first_seq=0, rig_time_first=0.0, period=0.01, poses=poses
    )
    assert len(f0) == 64
    c = P.decode_chunk([f0, f1], layout)
    assert np.array_equal(c.poses, poses) and c.analog.shape == (5, 0) and c.valid.all()
    # a mask for 11 trackers takes 2 bytes per sample
    valid = np.ones((5, 11), bool)
    valid[2, 10] = False
    f0, f1 = P.encode_chunk(
        rig_handle=1,
        layout=layout,
        session_id=SID,
        first_seq=0,
        rig_time_first=0.0,
        period=0.01,
        poses=poses,
        valid=valid,
    )
    assert len(f0) == 64 + 10
    assert P.decode_chunk([f0, f1], layout).valid.tolist() == valid.tolist()


def _with_values(poses_patch: Any, analog_patch: Any = None, valid: Any = None) -> list[bytes]:
    """A chunk whose buffer is written by hand (bypassing the encoder's own checks)."""
    f0, _ = (
        _doc_chunk()
        if valid is not None
        else P.encode_chunk(
            rig_handle=7,
            layout=LAYOUT,
            session_id=SID,
            first_seq=0,
            rig_time_first=0.0,
            period=0.01,
            poses=np.zeros((2, 2, 7), np.float32),
            analog=np.zeros((2, 1), np.float32),
        )
    )
    poses = np.zeros((2, 2, 7), np.float32)
    analog = np.zeros((2, 1), np.float32)
    poses_patch(poses)
    if analog_patch:
        analog_patch(analog)
    return [f0, poses.tobytes() + analog.tobytes()]


@pytest.mark.parametrize(
    ("frames", "ok"),
    [
        (_with_values(lambda p: p.__setitem__((0, 0, 0), np.inf)), False),
        (_with_values(lambda p: p.__setitem__((0, 0, 0), np.nan)), False),  # no mask: no NaN
        (_with_values(lambda p: None, lambda a: a.__setitem__((1, 0), np.nan)), False),
        (_with_values(lambda p: p.__setitem__((1, 1), np.nan), valid=True), True),  # lost tracker
        (_with_values(lambda p: p.__setitem__((1, 1, 3), np.inf), valid=True), False),
        (_with_values(lambda p: p.__setitem__((1, 0, 3), np.nan), valid=True), False),
        (_with_values(lambda p: p.__setitem__((1, 1), 5.0), valid=True), True),  # ignored values
    ],
)
def test_non_finite_rules(frames: list[bytes], ok: bool) -> None:
    if ok:
        P.decode_chunk(frames, LAYOUT)
    else:
        with pytest.raises(P.ProtocolError) as info:
            P.decode_chunk(frames, LAYOUT)
        assert info.value.kind is P.ErrorKind.NON_FINITE


def _header(**kw: Any) -> bytes:
    fields: dict[str, Any] = dict(
        handle=7,
        layout=LAYOUT.layout_id,
        sid=SID.bytes,
        first=0,
        count=2,
        flags=0,
        t0=0.0,
        period=0.01,
        major=1,
        mclass=0x44,
    )
    fields.update(kw)
    return P.CHUNK_HEADER.pack(
        b"LABP",
        fields["major"],
        0,
        fields["mclass"],
        0,
        fields["handle"],
        fields["layout"],
        fields["sid"],
        fields["first"],
        fields["count"],
        fields["flags"],
        fields["t0"],
        fields["period"],
    )


GOOD_BODY = bytes(2 * 15 * 4)


@pytest.mark.parametrize(
    ("frames", "kind"),
    [
        ([_header(), GOOD_BODY[:-4]], P.ErrorKind.BAD_SIZE),
        ([_header(), GOOD_BODY + b"\0\0\0\0"], P.ErrorKind.BAD_SIZE),
        ([_header() + b"\0", GOOD_BODY], P.ErrorKind.BAD_SIZE),
        ([_header(flags=1), GOOD_BODY], P.ErrorKind.BAD_SIZE),  # mask flag, no mask bytes
        ([_header(count=0), b""], P.ErrorKind.INVALID),
        ([_header(count=P.MAX_SAMPLES_PER_CHUNK + 1), GOOD_BODY], P.ErrorKind.INVALID),
        ([_header(flags=1 << 9), GOOD_BODY], P.ErrorKind.INVALID),
        ([_header(period=0.0), GOOD_BODY], P.ErrorKind.INVALID),
        ([_header(period=float("nan")), GOOD_BODY], P.ErrorKind.NON_FINITE),
        ([_header(t0=float("inf")), GOOD_BODY], P.ErrorKind.NON_FINITE),
        ([_header(handle=0), GOOD_BODY], P.ErrorKind.INVALID),
        ([_header(first=2**64 - 1), GOOD_BODY], P.ErrorKind.INVALID),
        ([_header(layout=123), GOOD_BODY], P.ErrorKind.BAD_LAYOUT),
        ([_header(major=3), GOOD_BODY], P.ErrorKind.BAD_VERSION),
        ([_header(mclass=0x43), GOOD_BODY], P.ErrorKind.UNKNOWN_TYPE),
        ([_header()[:40], GOOD_BODY], P.ErrorKind.MALFORMED),
        ([_header()], P.ErrorKind.MALFORMED),
        ([_header(count=4096), bytes(P.MAX_CHUNK_BYTES + 4)], P.ErrorKind.OVERSIZED),
    ],
)
def test_chunk_refusals(frames: list[bytes], kind: P.ErrorKind) -> None:
    P.decode_chunk([_header(), GOOD_BODY], LAYOUT)  # the unmodified chunk is fine
    with pytest.raises(P.ProtocolError) as info:
        P.decode_chunk(frames, LAYOUT)
    assert info.value.kind is kind


def test_encoder_refuses_what_the_decoder_would() -> None:
    ok = dict(
        rig_handle=1,
        layout=LAYOUT,
        session_id=SID,
        first_seq=0,
        rig_time_first=0.0,
        period=0.01,
        analog=np.zeros((1, 1), np.float32),
    )
    with pytest.raises(P.ProtocolError) as info:
        P.encode_chunk(poses=np.full((1, 2, 7), np.nan, np.float32), **ok)  # type: ignore[arg-type]
    assert info.value.kind is P.ErrorKind.NON_FINITE
    with pytest.raises(P.ProtocolError) as info:
        P.encode_chunk(poses=np.zeros((1, 3, 7), np.float32), **ok)  # type: ignore[arg-type]
    assert info.value.kind is P.ErrorKind.BAD_SIZE
    bad_period = {**ok, "period": 0.0}
    with pytest.raises(P.ProtocolError):
        P.encode_chunk(poses=np.zeros((1, 2, 7), np.float32), **bad_period)  # type: ignore[arg-type]


def test_patch_chunk_sets_handle_and_flags_only() -> None:
    f0, f1 = _doc_chunk()
    g0 = P.patch_chunk(f0, rig_handle=99, add_flags=P.ChunkFlags.RESEND)
    c = P.decode_chunk([g0, f1], LAYOUT)
    assert c.header.rig_handle == 99
    assert c.header.flags == P.ChunkFlags.MASK | P.ChunkFlags.RESEND
    assert g0[12:44] == f0[12:44] and g0[48:] == f0[48:]
    assert struct.unpack_from("<I", g0, 8)[0] == 99


def test_data_endpoint_default() -> None:
    assert P.data_endpoint_for("tcp://10.0.0.1:5555") == "tcp://10.0.0.1:5556"
    assert P.data_endpoint_for("ipc:///run/lab/ctl") == "ipc:///run/lab/ctl.data"
    with pytest.raises(ValueError):
        P.data_endpoint_for("tcp://host")


def test_merge_chunks_joins_contiguous_chunks_exactly() -> None:
    rng = np.random.default_rng(3)
    poses = rng.normal(size=(7, 2, 7)).astype(np.float32)
    analog = rng.normal(size=(7, 1)).astype(np.float32)
    valid = np.ones((7, 2), bool)
    valid[5, 1] = False

    def enc(lo: int, hi: int) -> tuple[bytes, bytes]:
        return P.encode_chunk(rig_handle=4, layout=LAYOUT, session_id=SID, first_seq=100 + lo,
                              rig_time_first=10.0 + lo / 120, period=1 / 120, poses=poses[lo:hi],
                              analog=analog[lo:hi], valid=valid[lo:hi])  # fmt: skip

    whole = P.decode_chunk(list(enc(0, 7)), LAYOUT)
    merged = P.merge_chunks(enc(0, 3), enc(3, 7), LAYOUT, 12)  # no mask + mask
    assert merged is not None
    m = P.decode_chunk(list(merged), LAYOUT)
    assert (m.first_seq, m.count, m.header.rig_handle) == (100, 7, 4)
    assert m.header.rig_time_first == whole.header.rig_time_first
    assert np.array_equal(np.nan_to_num(m.poses, nan=-1), np.nan_to_num(whole.poses, nan=-1))
    assert np.array_equal(m.analog, whole.analog) and np.array_equal(m.valid, whole.valid)
    # not joinable: a gap, the wrong order, too many samples, another session, a time jump
    assert P.merge_chunks(enc(0, 3), enc(4, 7), LAYOUT, 12) is None
    assert P.merge_chunks(enc(3, 7), enc(0, 3), LAYOUT, 12) is None
    assert P.merge_chunks(enc(0, 3), enc(3, 7), LAYOUT, 6) is None
    other = P.encode_chunk(rig_handle=4, layout=LAYOUT, session_id=uuid.uuid4(), first_seq=103,
                           rig_time_first=10.0 + 3 / 120, period=1 / 120, poses=poses[3:4],
                           analog=analog[3:4])  # fmt: skip
    assert P.merge_chunks(enc(0, 3), other, LAYOUT, 12) is None
    late = P.encode_chunk(rig_handle=4, layout=LAYOUT, session_id=SID, first_seq=103,
                          rig_time_first=11.0, period=1 / 120, poses=poses[3:4], analog=analog[3:4])
    assert P.merge_chunks(enc(0, 3), late, LAYOUT, 12) is None


def test_all_finite_checks_a_batch_and_decode_can_rely_on_it() -> None:
    """A receiver checks the sample frames of a batch of unmasked chunks in one pass; the
    per-chunk check still runs when the batch fails, and for every masked chunk."""
    sid = uuid.uuid4()

    def frames(first: int, bad: float | None = None, masked: bool = False) -> tuple[bytes, bytes]:
        poses = np.zeros((3, 2, 7), np.float32)
        poses[..., 6] = 1.0
        valid = None
        if masked:
            valid = np.ones((3, 2), bool)
            valid[1, 0] = False
        f0, f1 = P.encode_chunk(rig_handle=3, layout=LAYOUT, session_id=sid, first_seq=first,
                                rig_time_first=0.0, period=0.01, poses=poses,
                                analog=np.zeros((3, 1), np.float32), valid=valid)
        if bad is not None:
            arr = np.frombuffer(f1, np.float32).copy()
            arr[5] = bad
            f1 = arr.tobytes()
        return f0, f1

    good = [frames(3 * i) for i in range(50)]
    assert P.all_finite([f1 for _, f1 in good])
    assert P.all_finite([])
    for value in (np.nan, np.inf, -np.inf):
        batch = [*good[:20], frames(60, bad=value), *good[20:]]
        assert not P.all_finite([f1 for _, f1 in batch])
        # the failed batch falls back to the per-chunk check, which names the culprit
        with pytest.raises(P.ProtocolError) as err:
            P.decode_chunk(frames(60, bad=value), LAYOUT)
        assert err.value.kind is P.ErrorKind.NON_FINITE
    assert not P.all_finite([good[0][1][:-1]])  # not whole float32s: not vouched for
    # finite_checked skips only the unmasked whole-frame scan; a masked chunk's NaN rule holds
    f0, f1 = frames(0, bad=np.nan, masked=True)
    with pytest.raises(P.ProtocolError) as err:
        P.decode_chunk((f0, f1), LAYOUT, finite_checked=True)
    assert err.value.kind is P.ErrorKind.NON_FINITE
    chunk = P.decode_chunk(good[1], LAYOUT, finite_checked=True)
    assert chunk.first_seq == 3 and chunk.count == 3 and bool(chunk.valid.all())


@pytest.mark.parametrize("durable,received", [(-1, -1), (0, 0), (5, 7), (2**63 - 1, 2**63 - 1)])
def test_encode_data_ack_is_byte_identical_to_the_model(durable: int, received: int) -> None:
    """The controller's model-free DATA_ACK encoder gives exactly `encode_control(DataAck(...))`
    and decodes back to the same model."""
    for sid in (uuid.uuid4().hex, str(uuid.uuid4())):
        fast = P.encode_data_ack(sid, durable, received)
        model = P.DataAck(session_id=sid, durable_seq=durable, received_seq=received)
        assert fast == P.encode_control(model)
        assert P.decode_control(list(fast)) == model


@pytest.mark.parametrize("lost", [False, True])
def test_stream_encoder_gives_encode_chunks_bytes(lost: bool) -> None:
    """A rig's kept `chunk_prefix` + `encode_checked_chunk` = `encode_chunk(checked=True)`,
    byte for byte, for every chunk of the stream (mask, flags, varying sizes), and decodes."""
    sid = uuid.uuid4()
    prefix = P.chunk_prefix(77, LAYOUT, sid)
    rng = np.random.default_rng(3)
    first = 0
    for n in (1, 2, 3, 12):
        poses = rng.normal(size=(n, 2, 7)).astype(np.float32)
        analog = rng.normal(size=(n, 1)).astype(np.float32)
        valid = np.ones((n, 2), bool)
        if lost:
            valid[0, 1] = False
            poses[0, 1] = np.nan
        flags = int(P.ChunkFlags.RESEND) if n == 2 else 0
        fast = P.encode_checked_chunk(prefix, LAYOUT, first, 5.0 + first / 120, 1 / 120, poses,
                                      analog, valid, flags)
        ref = P.encode_chunk(rig_handle=77, layout=LAYOUT, session_id=sid, first_seq=first,
                             rig_time_first=5.0 + first / 120, period=1 / 120, poses=poses,
                             analog=analog, valid=valid, flags=flags, checked=True)
        assert fast == ref
        chunk = P.decode_chunk(fast, LAYOUT)
        assert chunk.first_seq == first and chunk.count == n
        assert bool(chunk.header.flags & int(P.ChunkFlags.MASK)) == lost
        assert np.array_equal(chunk.valid, valid)
        assert np.array_equal(chunk.poses[valid], poses[valid])
        first += n
    with pytest.raises(P.ProtocolError) as exc:
        P.encode_checked_chunk(prefix, LAYOUT, 0, 1.0, 1 / 120, np.zeros((3, 3, 7), np.float32),
                               np.zeros((3, 1), np.float32), None)
    assert exc.value.kind is P.ErrorKind.BAD_SIZE
    with pytest.raises(P.ProtocolError):
        P.chunk_prefix(1, LAYOUT, b"short")
