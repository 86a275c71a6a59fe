"""A rig registers, streams, stops; the spool holds every sample exactly once."""

from __future__ import annotations

from pathlib import Path

from controller_testkit import Harness

from lab_controller import protocol as P
from lab_controller.controller import decode_spool_record
from telemetry.spool import Spool


def stored_seqs(spool_dir: Path, session_id: str) -> list[int]:
    """Every sample sequence number stored for `session_id`, in spool order."""
    out: list[int] = []
    with Spool(spool_dir) as sp:
        for rec in sp.records():
            ch = decode_spool_record(rec.payload)
            if str(ch.session_id) == session_id:
                out.extend(range(ch.first_seq, ch.first_seq + ch.count))
                # x of every tracker carries the sequence number (controller_testkit)
                assert (ch.poses[:, 0, 0] == list(range(ch.first_seq, ch.first_seq + ch.count))).all()
    return out


def test_rig_registers_streams_and_finishes(harness: Harness) -> None:
    ctrl = harness.start()
    rig = harness.rig("rig-01")
    assert rig.wait(lambda: rig.handle != 0)
    api = harness.client()
    assert rig.wait(lambda: api.request(P.ApiRigs()).data["rigs"][0]["clock_offset_s"] is not None)
    rows = api.request(P.ApiRigs()).data["rigs"]
    assert [r["rig_id"] for r in rows] == ["rig-01"] and rows[0]["alive"]
    reply = api.request(P.ApiSessionStart(rig_id="rig-01", exercise_id="fillet", trainee="t-17"))
    sid = reply.data["session"]["session_id"]
    assert reply.data["session"]["state"] in ("armed", "running")
    assert rig.wait(lambda: rig.next_seq >= 120, 5)
    stop = api.request(P.ApiSessionStop(session_id=sid))
    assert stop.data["session"]["state"] in ("stopping", "finished")
    assert rig.wait(lambda: api.request(P.ApiSessionShow(session_id=sid)).data["session"]["state"]
                    == "finished", 5)
    show = api.request(P.ApiSessionShow(session_id=sid)).data["session"]
    last = show["end_of_stream"]["last_seq"]
    assert show["durable_seq"] == last and show["gaps"] == 0 and show["duplicates"] == 0
    states = [e["to"] for e in show["events"]]
    assert states == ["assigned", "armed", "running", "stopping", "finished"] or \
        states == ["assigned", "running", "stopping", "finished"]
    assert rig.wait(lambda: not rig.eos_pending and not rig.store, 2)
    ctrl.stop()
    assert harness.sink is not None
    harness.sink.close()
    assert stored_seqs(harness.tmp / "spool", sid) == list(range(last + 1))
    assert [e.to_state.value for e in harness.events if e.session_id == sid] == states
