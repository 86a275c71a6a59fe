"""The rig agent against a real (test) controller over loopback TCP: docs/protocol.md §7-§14."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zmq

from devices.agent import AgentConfig, RigAgent
from devices.minimal import MinimalDriver, generate
from lab_controller import protocol as P

from .conftest import AgentFactory
from .peer import PeerController, SessionData

ROOT = Path(__file__).resolve().parents[2]


def _assert_exact(sd: SessionData, n: int, seed: int, loss_every: int = 0, n_trackers: int = 3) -> None:
    """Stored samples are exactly 0..n-1 of the driver's closed form: no gap, no corruption."""
    assert sorted(sd.poses) == list(range(n)), "gap or extra samples"
    poses, analog, valid = generate(seed, 0, n, n_trackers, 1, loss_every)
    got = np.stack([sd.poses[i] for i in range(n)])
    assert np.array_equal(np.nan_to_num(got, nan=-9), np.nan_to_num(poses, nan=-9))
    assert np.array_equal(np.stack([sd.analog[i] for i in range(n)]), analog)
    assert np.array_equal(np.stack([sd.valid[i] for i in range(n)]), valid)


def _cmd() -> str:
    return str(uuid.uuid4())


def test_registers_streams_and_ends_with_handshake(peer: PeerController, make_agent: AgentFactory) -> None:
    agent, _ = make_agent(driver=MinimalDriver(seed=3, loss_every=7))
    hello = peer.messages("rig-01", P.Hello)[0]
    assert [t.name for t in hello.trackers] == ["tool", "headset", "off_hand"]
    assert hello.layout_id == agent.layout.layout_id and P.Capability.TIME_SYNC in hello.capabilities
    sid = peer.start_session("rig-01", duration_samples=60)
    assert peer.wait(lambda: peer.sessions[sid].eos_acked, 5.0)
    sd = peer.stored(sid)
    _assert_exact(sd, 60, seed=3, loss_every=7)
    assert sd.duplicates == 0
    assert sd.eos is not None and sd.eos.last_seq == 59 and sd.eos.reason is P.EndReason.FINISHED
    times = np.array([sd.rig_time[i] for i in range(60)])
    assert np.allclose(np.diff(times), 1 / 120)
    # chunks carry 10-30 ms of data (1-4 samples at 120 Hz), not one sample each
    assert agent.stats["chunks_sent"] < 60 / 1.5
    assert peer.wait(lambda: agent.state is P.RigState.IDLE and agent.backlog_chunks == 0, 2.0)
    assert not agent.streams


def test_heartbeats_carry_status(peer: PeerController, make_agent: AgentFactory) -> None:
    make_agent()
    sid = peer.start_session("rig-01")
    assert peer.wait(
        lambda: any(
            h.session_id == sid and h.state is P.RigState.RUNNING
            for h in peer.messages("rig-01", P.Heartbeat)
        ),
        3.0,
    )
    hb = [h for h in peer.messages("rig-01", P.Heartbeat) if h.session_id == sid][-1]
    assert hb.trackers_valid == [True, True, True] and hb.next_seq is not None


def test_commands_are_acknowledged_idempotent_and_refused_with_reasons(
    peer: PeerController, make_agent: AgentFactory
) -> None:
    agent, drv = make_agent()
    sid = str(uuid.uuid4())
    start = P.Start(command_id=_cmd(), session_id=sid, exercise_id="e", trainee="t")
    first = peer.command("rig-01", start)
    assert isinstance(first, P.Ack)
    t_started = drv._t0
    peer.replies.clear()
    again = peer.command("rig-01", start)  # same command id: same answer, no second start
    assert again == first and drv._t0 == t_started
    busy = peer.command(
        "rig-01", P.Start(command_id=_cmd(), session_id=str(uuid.uuid4()), exercise_id="e", trainee="t")
    )
    assert isinstance(busy, P.Nack) and busy.code is P.NackCode.BUSY
    unknown = peer.command("rig-01", P.Stop(command_id=_cmd(), session_id=str(uuid.uuid4())))
    assert isinstance(unknown, P.Nack) and unknown.code is P.NackCode.UNKNOWN_SESSION
    time.sleep(0.2)
    stop = peer.command("rig-01", P.Abort(command_id=_cmd(), session_id=sid, reason="drill"))
    assert isinstance(stop, P.Ack)
    assert peer.wait(lambda: peer.sessions[sid].eos_acked, 5.0)
    sd = peer.stored(sid)
    assert sd.eos is not None and sd.eos.reason is P.EndReason.ABORTED
    assert sd.eos.last_seq == stop.detail["last_seq"] and sd.eos.last_seq >= 10
    _assert_exact(sd, sd.eos.last_seq + 1, seed=0)
    # a repeated STOP for an ended session is still acknowledged
    late = peer.command("rig-01", P.Stop(command_id=_cmd(), session_id=sid))
    assert isinstance(late, P.Ack | P.Nack)
    assert peer.wait(lambda: agent.state is P.RigState.IDLE, 2.0)
    bad = peer.command(
        "rig-01",
        P.Start(
            command_id=_cmd(),
            session_id=str(uuid.uuid4()),
            exercise_id="e",
            trainee="t",
            scene={"invalid": True},
        ),
    )
    assert isinstance(bad, P.Nack) and bad.code is P.NackCode.INVALID_SCENE
    status = peer.messages("rig-01", P.Status)
    assert any(s.state is P.RigState.STOPPING for s in status)


def test_start_with_duration_finishes_by_itself(peer: PeerController, make_agent: AgentFactory) -> None:
    make_agent()
    sid = str(uuid.uuid4())
    ans = peer.command(
        "rig-01", P.Start(command_id=_cmd(), session_id=sid, exercise_id="e", trainee="t", duration_s=0.25)
    )
    assert isinstance(ans, P.Ack)
    with peer.lock:
        peer._session_rig[sid] = "rig-01"
    assert peer.wait(lambda: peer.sessions[sid].eos_acked, 5.0)
    sd = peer.stored(sid)
    assert sd.eos is not None and sd.eos.reason is P.EndReason.FINISHED and sd.eos.last_seq == 29


def test_time_sync_and_cues(peer: PeerController, make_agent: AgentFactory) -> None:
    agent, drv = make_agent()
    sid = peer.start_session("rig-01")
    before = drv.clock()
    peer.send("rig-01", P.TimeSync(probe_id=42, t0=1234.5))
    assert peer.wait(lambda: bool(peer.messages("rig-01", P.TimeSyncReply)), 2.0)
    reply = peer.messages("rig-01", P.TimeSyncReply)[0]
    assert reply.probe_id == 42 and reply.t0 == 1234.5
    assert before <= reply.t1 <= reply.t2 <= drv.clock()
    cue = P.Cue(
        session_id=sid,
        parameter="travel_speed",
        direction=P.CueDirection.DECREASE,
        message="slower",
        controller_time=time.time(),
        ref_seq=1,
        ref_rig_time=drv.clock(),
    )
    peer.send("rig-01", cue)
    assert peer.wait(lambda: len(drv.cues) == 1, 2.0)
    assert drv.cues[0] == cue
    assert len(agent.cue_latencies) == 1 and 0 <= agent.cue_latencies[0] < 1.0


def test_bad_input_is_answered_and_the_agent_keeps_working(
    peer: PeerController, make_agent: AgentFactory
) -> None:
    agent, _ = make_agent()
    garbage = [
        [b"hello"],
        [b"LABP\x01\x00C\x00", b"not json"],
        [b"LABP\x09\x00C\x00", b"{}"],
        [b"LABP\x01\x00C\x00", b'{"type":"frobnicate"}'],
        [b"LABP\x01\x00C\x00", b'{"type":"start","command_id":"x"}'],
        [b"LABP\x01\x00C\x00", b'{"type":"api.rigs"}'],  # valid message, wrong direction
    ]
    for frames in garbage:
        peer.send_raw("rig-01", frames)
    assert peer.wait(lambda: len(peer.bad) + len(peer.messages("rig-01", P.Error)) >= len(garbage), 3.0)
    codes = [e.code for e in peer.messages("rig-01", P.Error)]
    assert codes.count(P.ErrorKind.MALFORMED) == 2
    assert P.ErrorKind.BAD_VERSION in codes and P.ErrorKind.INVALID in codes
    assert codes.count(P.ErrorKind.UNKNOWN_TYPE) == 2
    assert agent.stats["bad_input"] == len(garbage)
    peer.send("rig-01", P.TimeSync(probe_id=7, t0=1.0))
    assert peer.wait(lambda: bool(peer.messages("rig-01", P.TimeSyncReply)), 2.0)


def test_unknown_rig_error_makes_the_agent_register_again(
    peer: PeerController, make_agent: AgentFactory
) -> None:
    agent, _ = make_agent()
    hellos = peer.hellos
    peer.send("rig-01", P.Error(code=P.ErrorKind.UNKNOWN_RIG, detail="who are you"))
    assert peer.wait(lambda: peer.hellos > hellos, 3.0)
    assert agent.stats["reconnects"] == 1


def test_controller_restart_mid_session_no_gap_no_duplicate(
    peer: PeerController, make_agent: AgentFactory
) -> None:
    peer.ack_delay_s = 0.3  # some data is received but not yet durable when the controller dies
    agent, _ = make_agent(driver=MinimalDriver(seed=11))
    sid = peer.start_session("rig-01", duration_samples=240)  # 2 s at 120 Hz
    time.sleep(0.7)
    received_before = len(peer.stored(sid).poses)
    peer.restart(down_s=0.8)  # non-durable samples are lost with the process
    assert peer.wait(lambda: peer.sessions[sid].eos_acked, 10.0)
    sd = peer.stored(sid)
    _assert_exact(sd, 240, seed=11)
    assert received_before > 0
    assert agent.stats["reconnects"] >= 1 and agent.stats["welcomes"] >= 2
    assert agent.stats["chunks_resent"] > 0 and sd.resent_chunks > 0
    assert agent.stats["coalesced"] > 0  # the backlog went out in fewer, larger chunks
    assert agent.backlog_chunks == 0


def test_unacknowledged_data_spills_to_the_spool_and_drains(
    peer: PeerController, make_agent: AgentFactory, tmp_path: Path
) -> None:
    peer.acks_enabled = False
    agent, _ = make_agent(memory_limit_bytes=2_000, spool_dir=tmp_path / "spool", ack_timeout_s=30.0)
    sid = peer.start_session("rig-01", duration_samples=120)
    assert peer.wait(lambda: agent.stats["samples_produced"] == 120, 5.0)
    assert agent.stats["spilled"] > 10
    assert agent.mem_bytes <= 2_000 + 400  # the bound (plus at most one chunk in transit)
    assert agent.spool is not None and agent.spool.pending_records > 0
    assert any((tmp_path / "spool").glob("seg-*.log"))
    peer.acks_enabled = True
    assert peer.wait(lambda: peer.sessions[sid].eos_acked, 10.0)
    _assert_exact(peer.stored(sid), 120, seed=0)
    assert peer.wait(lambda: agent.spool is not None and agent.spool.pending_records == 0, 2.0)
    assert agent.backlog_chunks == 0 and agent.mem_bytes == 0


def test_credit_window_bounds_what_is_in_flight(make_agent: AgentFactory, peer: PeerController) -> None:
    peer.max_inflight_chunks = 4
    peer.acks_enabled = False
    agent, _ = make_agent(ack_timeout_s=30.0)
    sid = peer.start_session("rig-01", duration_samples=60)
    assert peer.wait(lambda: peer.chunks_received >= 4, 3.0)
    time.sleep(0.3)  # more chunks are produced meanwhile, but none may be sent
    assert peer.chunks_received == 4 and agent.inflight_chunks == 4
    assert agent.stats["window_full"] > 0
    peer.acks_enabled = True
    assert peer.wait(lambda: peer.sessions[sid].eos_acked, 5.0)
    _assert_exact(peer.stored(sid), 60, seed=0)


def test_ack_timeout_resends_in_flight_chunks(make_agent: AgentFactory, peer: PeerController) -> None:
    peer.acks_enabled = False
    agent, _ = make_agent(ack_timeout_s=0.3)
    sid = peer.start_session("rig-01", duration_samples=12)
    assert peer.wait(lambda: agent.stats["chunks_resent"] > 0, 3.0)
    peer.acks_enabled = True
    assert peer.wait(lambda: peer.sessions[sid].eos_acked, 5.0)
    sd = peer.stored(sid)
    _assert_exact(sd, 12, seed=0)
    assert sd.duplicates > 0  # the controller saw them twice and kept them once


def test_agent_restart_resends_what_it_kept_on_disk(peer: PeerController, tmp_path: Path) -> None:
    peer.acks_enabled = False
    spool = tmp_path / "spool"
    a = RigAgent(
        AgentConfig(controller=peer.endpoint, rig_id="rig-09", spool_dir=spool, ack_timeout_s=30),
        MinimalDriver(seed=5),
    )
    th = threading.Thread(target=a.run, daemon=True)
    th.start()
    assert peer.wait(lambda: "rig-09" in peer.rigs, 5.0)
    sid = peer.start_session("rig-09")
    time.sleep(0.4)
    a.stop()
    th.join(5.0)
    produced = a.stats["samples_produced"]
    assert produced > 20
    peer.acks_enabled = True
    b = RigAgent(
        AgentConfig(controller=peer.endpoint, rig_id="rig-09", spool_dir=spool), MinimalDriver(seed=5)
    )
    assert b.backlog_chunks > 0
    th = threading.Thread(target=b.run, daemon=True)
    th.start()
    try:
        assert peer.wait(
            lambda: len(peer.sessions[sid].poses) == produced and peer.sessions[sid].durable == produced - 1,
            5.0,
        )
        _assert_exact(peer.stored(sid), produced, seed=5)
        assert peer.wait(lambda: b.spool is not None and b.spool.pending_records == 0, 3.0)
        # the stream is over (its driver died with the first process): the handshake says so
        assert peer.wait(lambda: peer.sessions[sid].eos_acked, 5.0)
        eos = peer.stored(sid).eos
        assert eos is not None and eos.reason is P.EndReason.ERROR and eos.last_seq == produced - 1
        # the agent drops the stream when the END_OF_STREAM ack reaches it, just after the peer
        # recorded sending it: wait for that instead of racing it
        assert peer.wait(lambda: not b.streams, 3.0)
    finally:
        b.stop()
        th.join(5.0)


def test_agent_as_a_process(peer: PeerController) -> None:
    cmd = [
        sys.executable,
        "-m",
        "devices.agent",
        "--controller",
        peer.endpoint,
        "--rig-id",
        "rig-p",
        "--seed",
        "4",
        "--loss-every",
        "9",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert peer.wait(lambda: "rig-p" in peer.rigs, 15.0), "agent process did not register"
        sid = peer.start_session("rig-p")
        time.sleep(0.5)
        ans = peer.command("rig-p", P.Stop(command_id=_cmd(), session_id=sid))
        assert isinstance(ans, P.Ack)
        assert peer.wait(lambda: peer.sessions[sid].eos_acked, 5.0)
        sd = peer.stored(sid)
        assert sd.eos is not None
        _assert_exact(sd, sd.eos.last_seq + 1, seed=4, loss_every=9)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5.0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_many_agents_in_one_group(peer: PeerController) -> None:
    from devices.agent import AgentGroup

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    agents = [
        RigAgent(AgentConfig(controller=peer.endpoint, rig_id=f"g-{i}"), MinimalDriver(seed=i), ctx)
        for i in range(8)
    ]
    group = AgentGroup(agents)
    th = threading.Thread(target=group.run, daemon=True)
    th.start()
    try:
        assert peer.wait(lambda: len(peer.rigs) == 8, 5.0)
        sids = {f"g-{i}": peer.start_session(f"g-{i}", duration_samples=30) for i in range(8)}
        assert peer.wait(lambda: all(peer.sessions[s].eos_acked for s in sids.values()), 5.0)
        for i in range(8):
            _assert_exact(peer.stored(sids[f"g-{i}"]), 30, seed=i)
    finally:
        group.stop()
        th.join(5.0)


@pytest.mark.parametrize("reason", ["reject"])
def test_reject_stops_the_agent(peer: PeerController, reason: str) -> None:
    agent = RigAgent(AgentConfig(controller=peer.endpoint, rig_id="rig-r"), MinimalDriver())
    th = threading.Thread(target=agent.run, daemon=True)
    th.start()
    assert peer.wait(lambda: "rig-r" in peer.rigs, 5.0)
    peer.send("rig-r", P.Reject(code=P.NackCode.NOT_ALLOWED, reason=reason))
    th.join(3.0)
    assert not th.is_alive() and agent.rejected is not None


def test_a_z85_server_key_starting_with_a_dash_is_a_value_not_an_option() -> None:
    """Z85 has '-' in its alphabet: about 1 controller key in 85 starts with it."""
    from devices.agent import _server_key, parse_args

    while True:
        public, _ = zmq.curve_keypair()
        if public.startswith(b"-"):
            break
    base = ["--controller", "tcp://127.0.0.1:1", "--rig-id", "r"]
    for form in (["--curve-server-key", public.decode()], [f"--curve-server-key={public.decode()}"]):
        args = parse_args([*base, *form])
        assert _server_key(args.curve_server_key) == public
    with pytest.raises(SystemExit):  # a missing value is still an error
        parse_args([*base, "--curve-server-key"])
