"""Judge averaging and the documented tie-break (pure), and the `labctl competition/judge`
commands against the real database (heat rows inserted the way the coordinator records them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lab_controller.cli import cli
from lab_controller.competition import rules
from lab_controller.competition.signing import generate_key, load_key
from telemetry import competition as tcomp
from telemetry.migrate import migrate


def _mark(cid: str, score: float, tiw: float) -> dict[str, Any]:
    return {"competitor_id": cid, "score": score,
            "result": {"components": {"time_in_window": tiw}}}


def test_judgement_is_the_mean_of_three_over_three_and_flags_spread() -> None:
    rows = [{"aspect": "bead", "judge_id": j, "mark": m} for j, m in (("a", 3), ("b", 2),
                                                                      ("c", 2))]
    score, aspects = rules.judgement(rows, ["bead"])
    assert score == pytest.approx(100 * (7 / 3) / 3)
    assert not aspects[0].needs_review
    score, aspects = rules.judgement(rows[:2], ["bead"])
    assert score is None and not aspects[0].complete  # pending until the third judge
    spread = [*rows[:2], {"aspect": "bead", "judge_id": "c", "mark": 0}]
    assert rules.judgement(spread, ["bead"])[1][0].needs_review  # 3 vs 0: discuss, re-mark


def test_tie_break_order_and_shared_ranks() -> None:
    comps = [{"competitor_id": c, "bib": b, "site_id": "s"} for c, b in
             (("A", 1), ("B", 2), ("C", 3), ("D", 4), ("E", 5))]
    entries = [{"competitor_id": c["competitor_id"], "heat_id": "h", "start_state": "started"}
               for c in comps]
    entries[4]["start_state"] = "failed"
    entries[4]["reason"] = "dead (no heartbeat)"
    marks = [_mark("A", 80.0, 0.70), _mark("B", 80.0, 0.75), _mark("C", 80.001, 0.75),
             _mark("D", 90.0, 0.9)]
    board = rules.leaderboard(comps, entries, marks, [], {"judgement_weight": 0.0})
    # D first; A, B, C have equal totals at 2 decimals (80.00): time in window breaks A vs
    # B/C; B and C are equal on every key and share rank 2; E (failed) last, unranked.
    assert [(s.competitor_id, s.rank) for s in board] == [("D", 1), ("B", 2), ("C", 2),
                                                          ("A", 4), ("E", None)]
    assert board[-1].reason == "dead (no heartbeat)"


def test_hmac_signature_detects_a_changed_byte(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k")
    assert load_key(tmp_path / "k").key_id == key.key_id
    sig = key.sign('{"score":81.25}')
    assert key.verify('{"score":81.25}', sig)
    assert not key.verify('{"score":81.26}', sig)
    assert not key.verify('{"score":81.25}', sig, key_id="someone-else")
    with pytest.raises(FileExistsError):
        generate_key(tmp_path / "k")


def test_cli_create_open_judge_leaderboard(db_dsn: str, tmp_path: Path) -> None:
    migrate(db_dsn)
    env = {"LABCTL_DATABASE__DSN": db_dsn, "LABCTL_STATE_DIR": str(tmp_path)}
    run = CliRunner().invoke

    def ok(*args: str) -> str:
        res = run(cli, list(args), env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    ok("competition", "create", "cup", "--name", "Cup", "--aspect", "bead",
       "--event", "fillet=fillet_t_joint_h:30", "--competitor", "X1:7:site-a",
       "--competitor", "X2:8:site-b", "--heat", "h1=fillet")
    assert "rubric sha256" in ok("competition", "open", "cup")
    tcomp.record_heat_start(db_dsn, "cup", "h1", state="started", agreed_start_us=0,
                            tolerance_ms=100, start_spread_ms=None, sites=[], detail={},
                            entries=[{"competitor_id": c, "site_id": s, "rig_id": "r",
                                      "session_id": None, "start_state": "failed",
                                      "reason": "rig off"} for c, s in (("X1", "site-a"),
                                                                        ("X2", "site-b"))])
    for judge in ("J1", "J2", "J3"):
        ok("judge", "mark", "cup", "fillet", "X1", "bead", "2", "--judge", judge)
    res = run(cli, ["judge", "mark", "cup", "fillet", "X1", "finish", "2", "--judge", "J1"],
              env=env)
    assert res.exit_code != 0 and "unknown aspect" in (res.output + str(res.exception))
    board = json.loads(ok("competition", "leaderboard", "cup", "fillet", "--json"))
    assert [(r["bib"], r["state"], r["reason"]) for r in board] == [(7, "failed", "rig off"),
                                                                    (8, "failed", "rig off")]
    assert board[0]["aspects"][0]["marks"] == {"J1": 2, "J2": 2, "J3": 2}
    assert "written" in ok("competition", "keygen", str(tmp_path / "key"))
    trail = [r["action"] for r in tcomp.audit_trail(db_dsn, "cup")]
    assert trail[:2] == ["create", "open"] and trail.count("judge_mark") == 3
