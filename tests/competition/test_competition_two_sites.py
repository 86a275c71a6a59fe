"""A competition across two sites, end to end on real parts.

Two site processes (each: lab controller + telemetry writer into the shared TimescaleDB +
simulated rigs + the site's coordination agent; site B's clock is skewed by 350 ms) and 6
rigs, one of which (site B) is deliberately powered off. The coordinator starts the heat
within the tolerance, the failed rig is recorded with its reason, the referee marks the
stored sessions, judges mark, the leaderboard ranks, a mark re-computes bit for bit, an appeal
with a changed rubric shows its difference without touching the frozen mark, the published
result verifies and a tampered one does not.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lab_controller.competition import service as svc_mod
from lab_controller.competition.coordination import Coordinator
from lab_controller.competition.service import CompetitionError, Competitions
from lab_controller.competition.signing import generate_key
from lab_controller.exercises import load_exercise
from telemetry import competition as tcomp
from telemetry import reference as tref
from telemetry.migrate import migrate

EXERCISE = "fillet_t_joint_h"
CID = "ws-2026-weld"
SKEW_B = 0.35  # site B's clock runs 350 ms ahead: more than the tolerance, so it must be measured
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def sites(db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    migrate(db_dsn)
    ex = load_exercise(EXERCISE)
    tref.upsert_exercise(db_dsn, ex.id, family=ex.kind, name=ex.title, geometry=ex.scene)
    tref.add_rubric(db_dsn, ex.rubric.rubric_id, int(ex.rubric.version), ex.id,
                    json.loads(ex.rubric.model_dump_json()), pass_mark=ex.rubric.pass_mark)
    procs: dict[str, subprocess.Popen[str]] = {}
    info: dict[str, Any] = {}
    tmp = tmp_path_factory.mktemp("sites")
    for site, rigs, prefix, skew in (("site-a", 3, "a-rig", 0.0), ("site-b", 2, "b-rig", SKEW_B)):
        tref.upsert_site(db_dsn, site, name=site)
        cfg = {"site_id": site, "dsn": db_dsn, "spool_dir": str(tmp / site), "rigs": rigs,
               "prefix": prefix, "seed": 7 if site == "site-a" else 11, "skew_s": skew}
        procs[site] = subprocess.Popen([sys.executable, str(HERE / "site_process.py"),
                                        json.dumps(cfg)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
    try:
        for site, proc in procs.items():
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, f"{site} process died"
            info[site] = json.loads(line)
        yield info
    finally:
        for proc in procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs.values():
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def heat(db_dsn: str, sites: dict[str, Any]) -> dict[str, Any]:
    """Set up, open and start heat 1; wait for every started session to finish."""
    svc = Competitions(db_dsn, actor="test-chief-expert")
    svc.create(CID, "WorldSkills-style welding, two cities",
               {"aspects": ["bead_appearance", "safe_practice"], "judgement_weight": 0.2})
    svc.add_event(CID, "fillet", EXERCISE, duration_s=3.0)
    plan: dict[str, tuple[str, str]] = {}
    for i, (site, rig) in enumerate([("site-a", "a-rig-000"), ("site-a", "a-rig-001"),
                                     ("site-a", "a-rig-002"), ("site-b", "b-rig-000"),
                                     ("site-b", "b-rig-001"), ("site-b", "b-rig-002")]):
        comp = f"C{i + 1:02d}"
        svc.add_competitor(CID, comp, bib=101 + i, site_id=site)
        plan[comp] = (site, rig)
    svc.add_heat(CID, "heat-1", "fillet")
    digests = svc.open(CID)
    coord = Coordinator({s: sites[s]["agent"] for s in sites})
    try:
        report = svc_mod.start_heat(svc, coord, CID, "heat-1", plan)
    finally:
        coord.close()
    started = [e for e in report.entries if e["session_id"]]
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        states = [tcomp.session_state(db_dsn, uuid.UUID(e["session_id"])) for e in started]
        if all(s == "finished" for s in states):
            break
        time.sleep(0.25)
    time.sleep(0.5)  # the writers' last batch (max_batch_ms 50) is committed
    return {"svc": svc, "report": report, "digests": digests, "plan": plan}


def test_heat_starts_within_tolerance_across_two_sites(heat: dict[str, Any],
                                                       db_dsn: str) -> None:
    report = heat["report"]
    clocks = report.clocks
    # site B's offset is measured (350 ms) and applied; otherwise the spread would be 350 ms
    assert abs(clocks["site-b"].offset_s - SKEW_B) < 0.02
    assert abs(clocks["site-a"].offset_s) < 0.02
    states = {e["rig_id"]: e["start_state"] for e in report.entries}
    assert states == {"a-rig-000": "started", "a-rig-001": "started", "a-rig-002": "started",
                      "b-rig-000": "started", "b-rig-001": "started", "b-rig-002": "failed"}
    assert report.spread_s is not None and report.spread_s <= report.tolerance_s
    assert all(abs(e["start_offset_ms"]) <= 1000 * report.tolerance_s
               for e in report.entries if e["start_state"] == "started")
    rows = {e["rig_id"]: e for e in tcomp.heat_entries(db_dsn, CID, "heat-1")}
    assert rows["b-rig-002"]["start_state"] == "failed"
    assert "unknown rig" in rows["b-rig-002"]["reason"]
    h = tcomp.heat(db_dsn, CID, "heat-1")
    assert h is not None and h["state"] == "started"
    assert h["start_spread_ms"] == pytest.approx(1000 * report.spread_s)
    site_rows = {s["site_id"]: s for s in tcomp.heat_sites(db_dsn, CID, "heat-1")}
    assert site_rows["site-b"]["rigs_failed"] == 1 and site_rows["site-a"]["rigs_ready"] == 3
    with psycopg.connect(db_dsn) as conn:
        tagged = conn.execute("SELECT count(*), count(DISTINCT site_id) FROM sessions WHERE "
                              "competition_id = %s AND heat_id = 'heat-1'", (CID,)).fetchone()
    assert tagged == (5, 2)
    print(f"\nstart spread across sites: {1000 * report.spread_s:.2f} ms "
          f"(tolerance {1000 * report.tolerance_s:.0f} ms); offsets ms: "
          f"{ {s: round(1000 * c.offset_s, 2) for s, c in clocks.items()} }")


def test_referee_marks_leaderboard_appeal_and_signed_result(
        heat: dict[str, Any], db_dsn: str, tmp_path: Path) -> None:
    svc: Competitions = heat["svc"]
    ids = svc.score_heat(CID, "heat-1")
    assert len(ids) == 5  # the failed rig has no session, hence no mark
    # a mark re-computed from the stored samples equals the stored one bit for bit
    for mark_id in ids[:2]:
        same, diffs = svc.recompute(mark_id)
        assert same, diffs
    marks = tcomp.marks(db_dsn, CID, "fillet")
    assert all(m["rubric_sha256"] == heat["digests"]["fillet"] for m in marks)
    assert all(m["frames"] >= 3 * 110 and m["seq_lo"] == 0 for m in marks)
    # judges: three each, independently, per aspect
    for k, m in enumerate(marks):
        for judge, delta in (("J1", 0), ("J2", 1), ("J3", 0)):
            for aspect in ("bead_appearance", "safe_practice"):
                svc.judge_mark(CID, "fillet", m["competitor_id"], aspect, judge,
                               min(3, (k + delta) % 4))
    with pytest.raises(CompetitionError):
        svc.judge_mark(CID, "fillet", "C01", "bead_appearance", "J1", 4)
    board = svc.leaderboard(CID, "fillet")
    ranked = [s for s in board if s.rank is not None]
    assert len(ranked) == 5 and board[-1].competitor_id == "C06"
    assert board[-1].state == "failed" and "unknown rig" in board[-1].reason
    totals = [s.total or 0.0 for s in ranked]
    assert totals == sorted(totals, reverse=True)
    assert all(s.complete and s.judgement is not None for s in ranked)
    # appeal with a changed rubric: difference shown, official mark untouched
    target = marks[0]
    ev = svc.event(CID, "fillet")
    changed = copy.deepcopy(ev["rubric"])
    changed["version"] = int(changed["version"]) + 1
    first = changed["metrics"]["aim_offset"]  # widen the aim window threefold
    width = float(first["max"]) - float(first["min"])
    first["min"], first["max"] = float(first["min"]) - width, float(first["max"]) + width
    before = tcomp.mark(db_dsn, int(target["mark_id"]))
    appeal = svc.appeal(CID, "fillet", target["competitor_id"], changed, reason="window too tight")
    after = tcomp.mark(db_dsn, int(target["mark_id"]))
    assert before == after
    assert appeal["official_score"] == float(target["score"])
    assert appeal["difference"]["metrics"], appeal["difference"]
    assert appeal["appeal_score"] != appeal["official_score"]
    assert svc.recompute(int(appeal["appeal_mark_id"]))[0]  # appeal marks re-compute too
    assert [s.competitor_id for s in svc.leaderboard(CID, "fillet")] == \
        [s.competitor_id for s in board]  # the appeal does not change the standings
    # publish, verify, tamper
    key = generate_key(tmp_path / "result.key")
    svc.publish(CID, "fillet", key)
    v = svc.verify(CID, "fillet", key, recompute=True)
    assert v.ok and v.marks_recomputed == 5, v.mismatches
    with pytest.raises(CompetitionError):
        svc.judge_mark(CID, "fillet", "C01", "bead_appearance", "J1", 3)  # frozen now
    with psycopg.connect(db_dsn) as conn:
        conn.execute("UPDATE competition_results SET payload_text = replace(payload_text, "
                     "'\"bib\":101', '\"bib\":199') WHERE competition_id = %s", (CID,))
    v = svc.verify(CID, "fillet", key)
    assert not v.signature_ok and not v.ok
    with psycopg.connect(db_dsn) as conn:
        conn.execute("UPDATE competition_results SET payload_text = replace(payload_text, "
                     "'\"bib\":199', '\"bib\":101') WHERE competition_id = %s", (CID,))
    assert svc.verify(CID, "fillet", key).ok
    with psycopg.connect(db_dsn) as conn:  # tamper with a stored mark instead
        conn.execute("UPDATE referee_marks SET score = score + 5 WHERE mark_id = %s",
                     (ids[0],))
    v = svc.verify(CID, "fillet", key)
    assert v.signature_ok and not v.payload_matches_database and not v.ok
    assert len(tcomp.audit_trail(db_dsn, CID)) > 20
