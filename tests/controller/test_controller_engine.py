"""Session engine behaviour against a scripted rig over real loopback sockets (in-process)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from controller_testkit import (
    FAST,
    LAYOUT,
    Harness,
    ScriptedRig,
    chunk_frames,
    stored_samples,
    wait_for,
)

from lab_controller import protocol as P
from lab_controller.controller import (
    ApiError,
    Controller,
    ControllerConfig,
    MemorySink,
    SessionInfo,
)


def _show(h: Harness, sid: str) -> dict[str, Any]:
    row: dict[str, Any] = h.client().request(P.ApiSessionShow(session_id=sid)).data["session"]
    return row


def _start(h: Harness, rig: str, **kw: object) -> str:
    reply = h.client().request(P.ApiSessionStart(rig_id=rig, exercise_id="fillet",
                                                 trainee="t", **kw))
    return str(reply.data["session"]["session_id"])


def test_hung_rig_interrupts_then_resumes_within_grace(harness: Harness) -> None:
    harness.start()
    rig = harness.rig("rig-h")
    assert rig.wait(lambda: rig.handle != 0)
    sid = _start(harness, "rig-h")
    assert rig.wait(lambda: rig.next_seq > 30)
    rig.hung = True  # application hang: the TCP connection stays up, nothing is answered
    assert wait_for(lambda: _show(harness, sid)["state"] == "interrupted", 2)
    rig.hung = False
    assert wait_for(lambda: _show(harness, sid)["state"] == "running", 5)
    harness.client().request(P.ApiSessionStop(session_id=sid))
    assert wait_for(lambda: _show(harness, sid)["state"] == "finished", 5)
    s = _show(harness, sid)
    assert s["gaps"] == 0 and s["durable_seq"] == s["end_of_stream"]["last_seq"]


def test_interrupted_session_fails_after_grace_and_abort_needs_no_rig(harness: Harness) -> None:
    harness.start(interrupted_grace_s=0.5)
    a, b = harness.rig("rig-g1"), harness.rig("rig-g2")
    assert wait_for(lambda: a.handle and b.handle)
    s1, s2 = _start(harness, "rig-g1"), _start(harness, "rig-g2")
    a.hung = b.hung = True
    assert wait_for(lambda: _show(harness, s2)["state"] == "interrupted", 2)
    reply = harness.client().request(P.ApiSessionAbort(session_id=s2, reason="rig broke"))
    assert reply.data["session"]["state"] == "aborted"
    assert wait_for(lambda: _show(harness, s1)["state"] == "failed", 3)
    assert "grace" in str(_show(harness, s1)["reason"])


def test_fail_fast_busy_dead_unknown_and_timeout(harness: Harness) -> None:
    harness.start(command_timeout_s=0.5)
    rig = harness.rig("rig-f")
    mute = harness.rig("rig-mute")
    assert wait_for(lambda: rig.handle and mute.handle)
    api = harness.client()
    _start(harness, "rig-f")
    with pytest.raises(ApiError) as busy:
        _start(harness, "rig-f")
    assert busy.value.code == "busy"
    with pytest.raises(ApiError) as unknown:
        _start(harness, "rig-nobody")
    assert unknown.value.code == "not_found"
    with pytest.raises(ApiError) as nosession:
        api.request(P.ApiSessionStop(session_id=str(uuid.uuid4())))
    assert nosession.value.code == "unknown_session"
    mute.ignore_commands = True
    t0 = time.monotonic()
    with pytest.raises(ApiError) as timeout:
        _start(harness, "rig-mute")
    assert timeout.value.code == "timeout" and time.monotonic() - t0 < 2
    sessions = api.request(P.ApiSessions(active_only=False)).data["sessions"]
    failed = [s for s in sessions if s["rig_id"] == "rig-mute"]
    assert failed[0]["state"] == "failed" and "timeout" in failed[0]["reason"]


class CueEveryChunk:
    """An observer that returns one cue per chunk and records the calls it got."""

    def __init__(self) -> None:
        self.started: list[SessionInfo] = []
        self.samples = 0
        self.ended: list[tuple[str, str]] = []

    def on_start(self, info: SessionInfo) -> None:
        self.started.append(info)

    def on_chunk(self, session_id: str, chunk: P.SampleChunk) -> Sequence[P.Cue]:
        self.samples += chunk.count
        return [P.Cue(session_id=session_id, parameter="travel_speed",
                      direction=P.CueDirection.DECREASE, ref_seq=chunk.header.last_seq,
                      controller_time=0.0)]

    def on_end(self, session_id: str, final_state: str) -> None:
        self.ended.append((session_id, final_state))


def test_observer_sees_every_sample_once_and_cues_reach_the_rig(harness: Harness) -> None:
    obs = CueEveryChunk()
    ctrl = harness.start(observers=[obs])
    rig = harness.rig("rig-cue")
    assert rig.wait(lambda: rig.handle != 0)
    sid = _start(harness, "rig-cue", rubric_version="v3")
    assert rig.wait(lambda: len(rig.cues) > 50, 5)
    harness.client().request(P.ApiSessionStop(session_id=sid))
    assert wait_for(lambda: obs.ended == [(sid, "finished")], 5)
    last = _show(harness, sid)["end_of_stream"]["last_seq"]
    assert obs.samples == last + 1
    assert obs.started[0].session_id == sid and obs.started[0].rubric_version == "v3"
    assert obs.started[0].trackers == LAYOUT.trackers
    assert all(c.session_id == sid and c.controller_time > 0 for c in rig.cues)
    lat = ctrl.status()["cue_latency_ms"]
    assert lat["n"] > 50 and lat["p99"] < 20.0, lat


def test_slow_sink_pushes_back_without_loss(tmp_path: Path) -> None:
    """A sink that refuses for a while: chunks are held, the data socket pauses, nothing lost."""
    sink = MemorySink()
    cfg = ControllerConfig(control_endpoint="tcp://127.0.0.1:*",
                           data_endpoint="tcp://127.0.0.1:*", api_endpoint="tcp://127.0.0.1:*",
                           heartbeat_interval_s=0.2)
    ctrl = Controller(cfg, sink)
    ctrl.start()
    rig = ScriptedRig(ctrl.endpoints["control"], "rig-bp", window=8).start()
    try:
        assert rig.wait(lambda: rig.handle != 0)
        from lab_controller.controller import ApiClient

        with ApiClient(ctrl.endpoints["api"]) as api:
            sid = api.request(P.ApiSessionStart(rig_id="rig-bp", exercise_id="x", trainee="t")
                              ).data["session"]["session_id"]
            assert rig.wait(lambda: rig.next_seq > 30)
            sink.busy = True
            time.sleep(1.0)
            status = api.request(P.ApiRigs()).data["controller"]
            assert status["held_events"] >= 1
            assert len(rig.store) > 8  # the rig keeps what is not acknowledged
            assert rig.wait(lambda: all(r.alive for r in ctrl.registry))  # control still served
            sink.busy = False
            api.request(P.ApiSessionStop(session_id=sid))
            assert wait_for(lambda: api.request(P.ApiSessionShow(session_id=sid)
                                                ).data["session"]["state"] == "finished", 5)
            last = api.request(P.ApiSessionShow(session_id=sid)
                               ).data["session"]["end_of_stream"]["last_seq"]
        seqs = [s for c in sink.chunks for s in range(c.first_seq, c.first_seq + c.count)]
        assert seqs == list(range(last + 1))
    finally:
        rig.stop()
        ctrl.stop()


def test_out_of_order_chunk_is_kept_gap_counted_and_filled(harness: Harness) -> None:
    """A chunk beyond a hole is stored, the ack stays at the contiguous prefix until filled."""
    ctrl = harness.start()
    rig = harness.rig("rig-gap")
    assert rig.wait(lambda: rig.handle != 0)
    rig.paused = True  # the test sends the chunks itself (the rig thread sends none)
    sid = _start(harness, "rig-gap")
    assert rig.wait(lambda: rig.state is P.RigState.RUNNING)

    def send(first: int, n: int) -> None:
        poses = np.zeros((n, 2, 7), np.float32)
        poses[:, :, 0] = np.arange(first, first + n)[:, None]
        poses[:, :, 6] = 1
        rig.send_raw(list(P.encode_chunk(
            rig_handle=rig.handle, layout=LAYOUT, session_id=uuid.UUID(sid), first_seq=first,
            rig_time_first=1.0, period=0.01, poses=poses,
            analog=np.zeros((n, 1), np.float32))), data=True)

    send(0, 5)
    send(10, 5)
    assert wait_for(lambda: (_show(harness, sid)["durable_seq"], _show(harness, sid)["received_seq"])
                    == (4, 14))
    s = _show(harness, sid)
    assert s["gaps"] == 1
    assert s["open_gaps"] == [[5, 10]] and s["durable_seq"] == 4 and s["received_seq"] == 14
    send(3, 7)  # overlaps 3..4: only 5..9 are new
    assert wait_for(lambda: _show(harness, sid)["durable_seq"] == 14)
    s = _show(harness, sid)
    assert s["open_gaps"] == [] and s["duplicates"] == 2 and s["samples"] == 15
    assert ctrl.status()["bad_input_total"] == 0


def test_bursts_take_the_fast_path_and_odd_chunks_the_general_one(harness: Harness) -> None:
    """Chunks sent in bursts reach the loop several per poll round: the plain contiguous ones
    take its fast path (`Controller._on_data_fast`), while a duplicate, a hole, its late
    filling, a wrong-size chunk and a masked chunk among them get the general path's handling.
    What is stored is exactly what was sent, once, and the counters say what happened."""
    ctrl = harness.start()
    rig = harness.rig("rig-fast")
    assert rig.wait(lambda: rig.handle != 0)
    rig.paused = True  # the test sends the chunks itself
    sid = _start(harness, "rig-fast")
    assert rig.wait(lambda: rig.state is P.RigState.RUNNING)

    def frames(first: int, n: int, lost: bool = False) -> list[bytes]:
        return list(chunk_frames(rig.handle, uuid.UUID(sid), first, n, lost, 1.0, 0.01))

    burst = [frames(3 * k, 3) for k in range(40)]  # 0..119, contiguous
    burst.append(frames(60, 3))  # duplicate
    burst.append(frames(130, 3))  # beyond a hole 120..129
    burst.append(frames(133, 3))  # contiguous, but the hole is open: general path
    short = frames(136, 3)
    burst.append([short[0], short[1][:-4]])  # wrong size: NACKed, nothing stored
    burst.append(frames(120, 10))  # fills the hole
    burst.append(frames(136, 3, lost=True))  # a validity mask: general path
    burst += [frames(139 + 3 * k, 3) for k in range(40)]  # 139..258, contiguous again
    for f in burst:
        rig.send_raw(f, data=True)
    last = 258
    assert wait_for(lambda: _show(harness, sid)["durable_seq"] == last)
    s = _show(harness, sid)
    assert s["gaps"] == 1 and s["open_gaps"] == [] and s["duplicates"] == 3
    assert s["samples"] == last + 1 and s["received_seq"] == last
    assert ctrl.status()["bad_input"] == {"bad_size": 1}
    nacks = [m for m in rig.received if isinstance(m, P.DataNack)]
    assert [(n.code, n.first_seq) for n in nacks] == [(P.ErrorKind.BAD_SIZE, 136)]
    # most chunks came several per round and took the fast path (at least the second half
    # of each 40-chunk run, whatever the round boundaries were, minus one per round)
    assert ctrl.status()["fast_path_chunks"] >= 10, ctrl.status()["fast_path_chunks"]
    ctrl.stop()
    assert harness.sink is not None
    harness.sink.close()
    # stored in arrival order (130.. before the late 120..), each sample once
    assert sorted(stored_samples(harness.tmp / "spool")[sid]) == list(range(last + 1))


def test_rig_that_returns_without_its_session_fails_it_at_once(harness: Harness) -> None:
    """A rig restarted without its store cannot complete the session: failed, with the reason."""
    harness.start(lost_session_wait_s=0.5)
    rig = harness.rig("rig-amnesia")
    assert rig.wait(lambda: rig.handle != 0)
    sid = _start(harness, "rig-amnesia")
    assert rig.wait(lambda: rig.next_seq > 30)
    rig.hung = True
    time.sleep(0.05)
    rig.session_id = None  # the rig process "restarted" and lost everything
    rig.state = P.RigState.IDLE
    rig.store.clear()
    rig.inflight.clear()
    rig.hung = False
    rig.handle = 0  # re-register now
    assert wait_for(lambda: _show(harness, sid)["state"] == "failed", 3)
    assert "without this session" in _show(harness, sid)["reason"]
    rows = harness.client().request(P.ApiRigs()).data["rigs"]
    assert rows[0]["alive"] and rows[0]["session_state"] is None  # free for a new session


def test_unlisted_session_whose_end_of_stream_follows_finishes(harness: Harness) -> None:
    """All data acknowledged, END_OF_STREAM lost in a reconnect: the re-sent EOS finishes it."""
    harness.start(lost_session_wait_s=1.0)
    rig = harness.rig("rig-eos")
    assert rig.wait(lambda: rig.handle != 0)
    sid = _start(harness, "rig-eos")
    assert rig.wait(lambda: rig.next_seq > 30)
    rig.paused = True
    assert rig.wait(lambda: not rig.store, 3)  # everything acknowledged
    rig.hung = True
    time.sleep(0.05)
    rig.eos_pending[sid] = P.EndOfStream(session_id=sid, last_seq=rig.next_seq - 1,
                                         reason=P.EndReason.FINISHED, rig_time=rig.rig_time())
    rig.session_id = None
    rig.state = P.RigState.IDLE
    rig.handle = 0  # re-register (listing nothing: no active session, no backlog)
    rig.hung = False
    assert wait_for(lambda: _show(harness, sid)["state"] == "finished", 3)
    time.sleep(1.2)
    assert _show(harness, sid)["state"] == "finished"


def test_start_carries_the_exercise_scene(tmp_path: Path) -> None:
    """START.scene comes from the request, else from `scene_for`; an unknown exercise fails fast."""
    scenes = {"fillet": {"weld_line": [[0, 0, 0], [300, 0, 0]]}}
    harness = Harness(tmp_path)
    try:
        cfg = ControllerConfig(**FAST)
        harness.start_with(cfg, scene_for=lambda ex: scenes[ex])
        rig = harness.rig("rig-scene")
        assert rig.wait(lambda: rig.handle != 0)
        api = harness.client()
        sid = api.request(P.ApiSessionStart(rig_id="rig-scene", exercise_id="fillet",
                                            trainee="t", params={"skill": 3})
                          ).data["session"]["session_id"]
        start = next(m for m in rig.received if isinstance(m, P.Start))
        assert start.scene == scenes["fillet"] and start.params == {"skill": 3}
        api.request(P.ApiSessionAbort(session_id=sid))
        assert rig.wait(lambda: rig.session_id is None)
        with pytest.raises(ApiError) as exc:
            api.request(P.ApiSessionStart(rig_id="rig-scene", exercise_id="nope", trainee="t"))
        assert exc.value.code == "invalid_scene"
        own = {"plate": 1}
        api.request(P.ApiSessionStart(rig_id="rig-scene", exercise_id="nope", trainee="t",
                                      params={"scene": own}))
        starts = [m for m in rig.received if isinstance(m, P.Start)]
        assert starts[-1].scene == own and "scene" not in starts[-1].params
    finally:
        harness.close()


def test_class_launch_checks_trackers_clock_and_busy(harness: Harness) -> None:
    """Each rig is checked; only the healthy ones start, and each refusal says why."""
    harness.start()
    ok = harness.rig("rig-ok")
    blind = harness.rig("rig-blind", trackers_valid=[True, False])
    no_clock = harness.rig("rig-noclock", answer_time_sync=False)
    busy = harness.rig("rig-busy")
    assert wait_for(lambda: all(r.handle for r in (ok, blind, no_clock, busy)))
    assert wait_for(lambda: all(
        r["clock_offset_s"] is not None for r in harness.client().request(P.ApiRigs()).data["rigs"]
        if r["rig_id"] != "rig-noclock"), 3)
    time.sleep(0.3)  # a couple of heartbeats with tracker validity
    _start(harness, "rig-busy")
    data = harness.client().request(P.ApiClassLaunch(
        exercise_id="fillet", rigs=["rig-ok", "rig-blind", "rig-noclock", "rig-busy", "rig-x"],
        trainees=["a", "b", "c", "d", "e"])).data
    by = {r["rig_id"]: r for r in data["results"]}
    assert data["started"] == 1 and by["rig-ok"]["ok"] and by["rig-ok"]["trainee"] == "a"
    assert "trackers not tracking: hmd" in by["rig-blind"]["reason"]
    assert "clock offset not yet known" in by["rig-noclock"]["reason"]
    assert "busy" in by["rig-busy"]["reason"]
    assert "unknown rig" in by["rig-x"]["reason"]
    assert sorted(data["not_started"]) == ["rig-blind", "rig-busy", "rig-noclock", "rig-x"]
    with pytest.raises(ApiError) as exc:
        harness.client().request(P.ApiClassLaunch(exercise_id="fillet", rigs=["rig-ok"],
                                                  trainees=["a", "b"]))
    assert exc.value.code == "invalid"


def test_controller_sets_its_collector_thresholds(harness: Harness) -> None:
    """The loop raises CPython's collection thresholds (ControllerConfig.gc_thresholds) so the
    young generation is not collected many times a second under load; None leaves them."""
    import gc

    before = gc.get_threshold()
    try:
        harness.start(gc_thresholds=(12_345, 20, 30))
        assert gc.get_threshold() == (12_345, 20, 30)
        harness.close()
        gc.set_threshold(*before)
        harness.start(gc_thresholds=None)
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
