"""A small competition for the dashboard tests, written through the same telemetry functions the
competition service uses (`telemetry.competition`).

Used in two places: on its own by tests/competition/test_competition_dashboard.py (which checks
the SQL standings against the Python leaderboard), and on top of the synthetic lab by
`labdata.fill`, where its provisional competitors run on real lab sessions (a finished session
with a pipeline result, and the live class's running session with only score windows).

Six competitors in two heats of one event: C first; A and B equal at 2 decimals (B wins on time
in window); D with judge marks pending; E failed to start (kept, with its reason); F provisional
(pipeline result, no referee mark yet). A appealed.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg

from lab_controller.competition import rules
from telemetry import competition as tcomp
from telemetry import reference as tref

CID = "dash-cup"
EVENT = "ev"
PROVISIONAL = "00000000-0000-4000-8000-0000000000f0"
"""F's session when no real session is given: only a pipeline result row is inserted for it."""
LIVE_COMPETITOR = "G"
"""Added only when a session is given for it: live, measured by the mean of its score windows."""

# competitor -> (referee score, time in window of the referee's mark); None: no mark
SCORES: dict[str, tuple[float | None, float | None]] = {
    "A": (80.004, 0.7), "B": (80.0, 0.8), "C": (91.0, 0.9), "D": (79.0, 0.5),
    "E": (None, None), "F": (None, None),
}
JUDGES = {"A": (2, 2, 2), "B": (2, 2, 2), "C": (3, 1, 3), "D": (1, 1)}


def _site(i: int) -> str:
    return "site-a" if i % 2 else "site-b"


def fill(dsn: str, *, create_sites: bool = True,
         sessions: Mapping[str, tuple[str, str, str]] | None = None) -> None:
    """Insert the competition (opened, two heats started, marks, judges, one appeal).

    ``create_sites``: insert site-a/site-b (off when the lab data already has them, so their
    names stay). ``sessions``: competitor -> (site, rig, session id) of an existing session; with
    ``LIVE_COMPETITOR`` in it, that competitor is added to heat h2. Without a session for F, F
    gets `PROVISIONAL` and a pipeline result of 84.5 (time in window 0.6).
    """
    sessions = dict(sessions or {})
    if create_sites:
        for site in ("site-a", "site-b"):
            tref.upsert_site(dsn, site, name=site)
    tcomp.create_competition(dsn, CID, "Dashboard cup",
                             rules.merged_rules({"aspects": ["bead"], "judgement_weight": 0.25}))
    tcomp.add_event(dsn, CID, EVENT, "fillet_t_joint_h", "r", 1, 120.0, 30.0)
    tcomp.open_competition(dsn, CID, {EVENT: ({"rubric_id": "r"}, "sha", "k")})
    tcomp.add_heat(dsn, CID, "h1", EVENT)
    tcomp.add_heat(dsn, CID, "h2", EVENT)
    competitors = list(SCORES) + ([LIVE_COMPETITOR] if LIVE_COMPETITOR in sessions else [])
    entries = []
    for i, comp in enumerate(competitors):
        site, rig, session = sessions.get(
            comp, (_site(i), f"r{i}", PROVISIONAL if comp == "F" else None))
        tcomp.add_competitor(dsn, CID, comp, 10 + i, site)
        entries.append({"competitor_id": comp, "site_id": site, "rig_id": rig,
                        "session_id": session,
                        "start_state": "failed" if comp == "E" else "started",
                        "reason": "dead (no heartbeat)" if comp == "E" else "",
                        "start_time_us": None, "start_offset_ms": 1.5})
    for heat, part in (("h1", entries[:3]), ("h2", entries[3:])):
        tcomp.record_heat_start(dsn, CID, heat, state="started", agreed_start_us=0,
                                tolerance_ms=100.0, start_spread_ms=3.2,
                                sites=[{"site_id": "site-a", "clock_offset_ms": 0.1,
                                        "clock_rtt_ms": 0.2, "rigs_ready": 2}],
                                entries=part, detail={})
    for n, (comp, (score, tiw)) in enumerate(SCORES.items(), start=1):
        if score is None:
            continue
        tcomp.insert_mark(dsn, {
            "competition_id": CID, "event_id": EVENT, "heat_id": "h1", "competitor_id": comp,
            "site_id": "site-a", "session_id": f"00000000-0000-4000-8000-{n:012d}",
            "purpose": "official", "rubric_id": "r", "rubric_version": 1, "rubric_sha256": "s",
            "kernel_version": "k", "seq_lo": 0, "seq_hi": 9, "frames": 10, "data_sha256": "d",
            "mark_sha256": "m", "score": score, "passed": True,
            "result": {"components": {"time_in_window": tiw}}, "result_text": "{}"})
    for comp, marks in JUDGES.items():
        for judge, m in zip(("J1", "J2", "J3"), marks, strict=False):
            tcomp.put_judge_mark(dsn, CID, EVENT, comp, "bead", judge, m)
    if "F" not in sessions:
        with psycopg.connect(dsn) as conn:  # F: the live pipeline's result, no referee mark yet
            conn.execute("INSERT INTO results (session_id, rubric_id, rubric_version, site_id, "
                         "final_score, passed, components) VALUES (%s, 'r', 1, 'site-b', 84.5, "
                         "true, '{\"time_in_window\": 0.6}')", (PROVISIONAL,))
    official = tcomp.marks(dsn, CID, EVENT)[0]
    tcomp.insert_appeal(dsn, {"competition_id": CID, "event_id": EVENT, "competitor_id": "A",
                              "reason": "r", "official_mark_id": official["mark_id"],
                              "appeal_mark_id": official["mark_id"], "official_score": 80.0,
                              "appeal_score": 82.5, "difference": {}})
