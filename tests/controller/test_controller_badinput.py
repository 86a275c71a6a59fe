"""Bad input on every socket: counted per kind, answered where a peer waits, never a crash,
never a lost good sample. Ends with a hypothesis fuzz of random and mutated frames."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from controller_testkit import LAYOUT, Harness, ScriptedRig, stored_samples, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab_controller import protocol as P


class Peer:
    """A raw DEALER speaking to a controller socket, frame by frame."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout: float = 2.0) -> Any:
        assert self.sock.poll(int(timeout * 1000)), "no answer"
        frames = self.sock.recv_multipart()
        if frames and frames[0] == b"":
            frames = frames[1:]
        return P.decode_control(frames)

    def drain(self) -> None:
        while self.sock.poll(0):
            self.sock.recv_multipart()


def _ctl(msg: Any) -> list[bytes]:
    return list(P.encode_control(msg))


def _chunk(rig: ScriptedRig, sid: str, first: int, n: int = 2, nan: bool = False,
           mask: bool = False) -> list[bytes]:
    poses = np.zeros((n, 2, 7), np.float32)
    poses[:, :, 6] = 1
    valid = None
    if mask:
        valid = np.ones((n, 2), bool)
        valid[0, 1] = False
    f0, f1 = P.encode_chunk(rig_handle=rig.handle, layout=LAYOUT, session_id=uuid.UUID(sid),
                            first_seq=first, rig_time_first=1.0, period=0.01, poses=poses,
                            analog=np.zeros((n, 1), np.float32), valid=valid)
    if nan:  # a NaN in tracker 0 (valid) of sample 0, written after encoding
        arr = np.frombuffer(f1, np.float32).copy()
        arr[0] = np.nan
        f1 = arr.tobytes()
    return [f0, f1]


def test_bad_control_input_is_answered_and_counted(harness: Harness) -> None:
    ctrl = harness.start()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    peer = Peer(ctx, harness.control)
    prologue = P.PROLOGUE.pack(P.MAGIC, 1, 0, P.MessageClass.CONTROL, 0)
    cases = [
        ([b"garbage"], "malformed"),
        ([b"XXXX\x01\x00C\x00", b"{}"], "malformed"),
        ([P.PROLOGUE.pack(P.MAGIC, 9, 0, P.MessageClass.CONTROL, 0), b"{}"], "bad_version"),
        ([prologue, b'{"type": "teleport"}'], "unknown_type"),
        ([prologue, b'{"type": "hello", "rig_id": "r"}'], "invalid"),
        ([prologue, b"[1, 2]"], "malformed"),
        ([prologue, b"\xff\xfe"], "malformed"),
        ([prologue, json.dumps({"type": "heartbeat", "pad": "x" * 300_000}).encode()],
         "oversized"),
        (_ctl(P.Heartbeat(sender_time=1.0)), "unknown_rig"),
        ([prologue, b"{}", b"extra"], "malformed"),
    ]
    for frames, kind in cases:
        peer.send(frames)
        reply = peer.recv()
        assert isinstance(reply, P.Error) and reply.code.value == kind, (kind, reply)
        assert reply.version == P.PROTOCOL_VERSION
    # a HELLO whose layout id lies is rejected, not registered
    hello = ScriptedRig(harness.control, "rig-liar").hello().model_copy(update={"layout_id": 7})
    peer.send(_ctl(hello))
    assert isinstance(peer.recv(), P.Reject)
    counts = ctrl.status()["bad_input"]
    for kind in ("malformed", "bad_version", "unknown_type", "invalid", "oversized",
                 "unknown_rig", "bad_layout"):
        assert counts.get(kind, 0) >= 1, (kind, counts)
    # a too-large frame is cut off by libzmq (ZMQ_MAXMSGSIZE): the controller stays up
    peer.send([prologue, b"x" * (P.MAX_MESSAGE_BYTES + 10)])
    assert harness.client().request(P.ApiRigs()).ok
    peer.sock.close()


def test_bad_chunks_are_nacked_good_samples_all_kept(harness: Harness, tmp_path: Path) -> None:
    ctrl = harness.start()
    rig = harness.rig("rig-bad")
    rig.paused = True
    assert rig.wait(lambda: rig.handle != 0)
    sid = harness.client().request(P.ApiSessionStart(rig_id="rig-bad", exercise_id="x",
                                                     trainee="t")).data["session"]["session_id"]
    assert rig.wait(lambda: rig.state is P.RigState.RUNNING)
    good = _chunk(rig, sid, 0)
    bad = [
        ([good[0], good[1][:-4]], "bad_size"),
        (_chunk(rig, sid, 2, nan=True), "non_finite"),
        ([good[0][:12] + b"\x01\x02\x03\x04" + good[0][16:], good[1]], "bad_layout"),
        (_chunk(rig, str(uuid.uuid4()), 0), "unknown_session"),
    ]
    rig.send_raw(good, data=True)
    for frames, _kind in bad:
        rig.send_raw(frames, data=True)
    rig.send_raw(_chunk(rig, sid, 2, mask=True), data=True)  # NaN only where masked: good
    rig.send_raw([good[0][:8] + b"\xff\xff\x00\x00" + good[0][12:], good[1]], data=True)
    rig.send_raw([b"junk"], data=True)
    def nacks() -> list[P.DataNack]:
        return [m for m in rig.received if isinstance(m, P.DataNack)]

    assert wait_for(lambda: len(nacks()) == 4, 3)
    assert sorted(n.code.value for n in nacks()) == sorted(k for _, k in bad)
    # counted, not answered (the last frames may be handled in the loop's next poll round)
    assert wait_for(lambda: ctrl.status()["bad_input"].get("unknown_rig") == 1
                    and ctrl.status()["bad_input"].get("malformed") == 1, 3), \
        ctrl.status()["bad_input"]
    assert wait_for(lambda: harness.client().request(P.ApiSessionShow(session_id=sid))
                    .data["session"]["durable_seq"] == 3)
    rig.next_seq = 4  # the rig carries on after the samples the test sent by hand
    rig.paused = False
    assert rig.wait(lambda: rig.next_seq > 40)
    harness.client().request(P.ApiSessionStop(session_id=sid))
    assert wait_for(lambda: harness.client().request(P.ApiSessionShow(session_id=sid))
                    .data["session"]["state"] == "finished", 5)
    last = harness.client().request(P.ApiSessionShow(session_id=sid)
                                    ).data["session"]["end_of_stream"]["last_seq"]
    ctrl.stop()
    assert harness.sink is not None
    harness.sink.close()
    assert stored_samples(tmp_path / "spool")[sid] == list(range(last + 1))


def test_bad_api_input_gets_an_error_reply(harness: Harness) -> None:
    harness.start()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    peer = Peer(ctx, harness.api_endpoint)
    for frames, kind in [
        ([b"", b"nonsense"], "malformed"),
        ([b"", *_ctl(P.Heartbeat(sender_time=1.0))], "unknown_type"),
        ([b"", *P.encode_control(P.ApiSessionShow(session_id=str(uuid.uuid4())))], None),
    ]:
        peer.send(frames)
        reply = peer.recv()
        if kind is None:
            assert isinstance(reply, P.ApiReply) and not reply.ok
            assert reply.error_code == "not_found"
        else:
            assert isinstance(reply, P.Error) and reply.code.value == kind
    peer.sock.close()


# ── fuzz ──────────────────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    h = Harness(tmp_path_factory.mktemp("fuzz"))
    h.start()
    rig = h.rig("rig-fuzz")
    assert rig.wait(lambda: rig.handle != 0)
    api = h.client()
    sid = api.request(P.ApiSessionStart(rig_id="rig-fuzz", exercise_id="x", trainee="t")
                      ).data["session"]["session_id"]
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    assert h.ctrl is not None
    push = ctx.socket(zmq.PUSH)
    push.linger = 0
    push.connect(h.ctrl.endpoints["data"])
    target = {"h": h, "rig": rig, "api": api, "sid": sid, "control": Peer(ctx, h.control),
              "apipeer": Peer(ctx, h.api_endpoint), "push": push}
    try:
        yield target
    finally:
        push.close()
        target["control"].sock.close()
        target["apipeer"].sock.close()
        h.close()


def _seeds(rig: ScriptedRig, sid: str) -> list[list[bytes]]:
    # (HELLO under another rig id: a HELLO for rig-fuzz would legitimately take the rig over)
    other = ScriptedRig("tcp://127.0.0.1:1", "rig-seed")
    hello = other.hello()
    other.ctx.term()
    return [
        _ctl(hello),
        _ctl(P.Heartbeat(sender_time=1.0, state=P.RigState.RUNNING)),
        _ctl(P.TimeSyncReply(probe_id=1, t0=1.0, t1=2.0, t2=2.0)),
        _ctl(P.ApiRigs()),
        _chunk(rig, sid, 10_000),
    ]


frames_st = st.lists(st.binary(max_size=300), min_size=0, max_size=4)
mutation_st = st.tuples(st.integers(0, 4), st.integers(0, 1), st.integers(0, 400),
                        st.integers(0, 255), st.sampled_from(["flip", "cut", "grow"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(random_frames=frames_st, mutation=mutation_st, where=st.sampled_from(
    ["control", "data", "api"]))
def test_fuzz_controller_stays_up_and_answers(fuzz_target: dict[str, Any],
                                              random_frames: list[bytes],
                                              mutation: tuple[int, int, int, int, str],
                                              where: str) -> None:
    rig: ScriptedRig = fuzz_target["rig"]
    seed_i, frame_i, pos, value, op = mutation
    if "seeds" not in fuzz_target:
        fuzz_target["seeds"] = _seeds(rig, fuzz_target["sid"])
    seed = fuzz_target["seeds"][seed_i]
    frame = bytearray(seed[frame_i])
    pos = min(pos, len(frame) - 1)
    if op == "flip":
        frame[pos] = value
    elif op == "cut":
        del frame[pos:]
    else:
        frame[pos:pos] = bytes([value]) * (value % 16)
    mutated = list(seed)
    mutated[frame_i] = bytes(frame)
    for frames in (random_frames, mutated):
        if not frames:
            continue
        if where == "data":
            fuzz_target["push"].send_multipart(frames)
        elif where == "api":
            fuzz_target["apipeer"].send([b"", *frames])
        else:
            fuzz_target["control"].send(frames)
    fuzz_target["control"].drain()
    fuzz_target["apipeer"].drain()
    reply = fuzz_target["api"].request(P.ApiRigs())  # the next good message is answered
    assert reply.ok and any(r["rig_id"] == "rig-fuzz" for r in reply.data["rigs"])


def test_fuzz_aftermath_session_complete(fuzz_target: dict[str, Any]) -> None:
    """After the fuzz, the running session's good samples are all there, in order, once."""
    h: Harness = fuzz_target["h"]
    api, sid = fuzz_target["api"], fuzz_target["sid"]
    assert h.ctrl is not None and h.ctrl.loop_errors == 0
    api.request(P.ApiSessionStop(session_id=sid))
    assert wait_for(lambda: api.request(P.ApiSessionShow(session_id=sid)).data["session"]
                    ["state"] in ("finished",), 10)
    s = api.request(P.ApiSessionShow(session_id=sid)).data["session"]
    assert s["durable_seq"] == s["end_of_stream"]["last_seq"] and s["samples"] >= s["durable_seq"]


def test_req_clients_are_served_too(harness: Harness) -> None:
    """protocol.md §16: REQ or DEALER clients; a REQ client gets its reply through the envelope."""
    harness.start()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.linger = 0
    req.connect(harness.api_endpoint)
    try:
        req.send_multipart(list(P.encode_control(P.ApiRigs(request_id="r-1"))))
        assert req.poll(2000)
        reply = P.decode_control(req.recv_multipart())
        assert isinstance(reply, P.ApiReply) and reply.ok and reply.request_id == "r-1"
    finally:
        req.close()
