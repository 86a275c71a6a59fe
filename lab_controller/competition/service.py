"""Competition operations over the central database (what ``labctl competition`` calls).

Life cycle: ``create`` (draft) → ``add_event`` / ``add_competitor`` / ``add_heat`` → ``open``
(every event's rubric is copied from the ``rubrics`` table or the exercise library and frozen
with its SHA-256 and the kernel version) → heats start (``coordination.Coordinator`` records
each start) → ``score_heat`` (official referee marks from the stored samples) → judges mark →
``leaderboard`` (live at any time) → ``appeal`` (re-score under another rubric, stored beside
the official mark) → ``publish`` (signed, frozen) → ``verify``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from lab_controller.competition import referee, rules
from lab_controller.competition.signing import ALGORITHM, SigningKey
from lab_controller.exercises import load_exercise, scene_for
from telemetry import competition as db
from telemetry import queries as tq

CompetitionError = db.CompetitionError
FINISHED_STATES = ("finished",)


@dataclass(frozen=True)
class Verification:
    ok: bool
    signature_ok: bool
    payload_matches_database: bool
    marks_recomputed: int
    mismatches: list[str]


class Competitions:
    """The competition service over one central database DSN."""

    def __init__(self, dsn: str, actor: str = "") -> None:
        self.dsn = dsn
        self.actor = actor

    # ---- set-up ----------------------------------------------------------------------------
    def create(self, competition_id: str, name: str = "",
               rule_overrides: dict[str, Any] | None = None) -> None:
        db.create_competition(self.dsn, competition_id, name, rules.merged_rules(rule_overrides),
                              self.actor)

    def add_event(self, competition_id: str, event_id: str, exercise_id: str,
                  rubric_version: int | None = None, duration_s: float | None = None) -> None:
        ex = load_exercise(exercise_id)
        db.add_event(self.dsn, competition_id, event_id, exercise_id, ex.rubric.rubric_id,
                     int(rubric_version if rubric_version is not None else ex.rubric.version),
                     ex.rate_hz, duration_s)

    def add_competitor(self, competition_id: str, competitor_id: str, bib: int,
                       site_id: str) -> None:
        db.add_competitor(self.dsn, competition_id, competitor_id, bib, site_id)

    def add_heat(self, competition_id: str, heat_id: str, event_id: str) -> None:
        db.add_heat(self.dsn, competition_id, heat_id, event_id)

    def open(self, competition_id: str) -> dict[str, str]:
        """Freeze every event's rubric document (database version if stored, else library)."""
        frozen: dict[str, tuple[dict[str, Any], str, str]] = {}
        for ev in db.events(self.dsn, competition_id):
            doc = db.rubric_document(self.dsn, ev["rubric_id"], int(ev["rubric_version"]))
            if doc is None:
                lib = load_exercise(ev["exercise_id"]).rubric
                if int(lib.version) != int(ev["rubric_version"]):
                    raise CompetitionError(
                        f"rubric {ev['rubric_id']} v{ev['rubric_version']} is neither stored "
                        f"nor the library's (v{lib.version})")
                doc = json.loads(lib.model_dump_json())
            frozen[ev["event_id"]] = (doc, referee.rubric_sha256(doc), referee.kernel_version())
        db.open_competition(self.dsn, competition_id, frozen, self.actor)
        return {e: f[1] for e, f in frozen.items()}

    def event(self, competition_id: str, event_id: str) -> dict[str, Any]:
        for ev in db.events(self.dsn, competition_id):
            if ev["event_id"] == event_id:
                return ev
        raise CompetitionError(f"no event {event_id!r} in {competition_id!r}")

    def rules_of(self, competition_id: str) -> dict[str, Any]:
        c = db.competition(self.dsn, competition_id)
        if c is None:
            raise CompetitionError(f"no competition {competition_id!r}")
        return rules.merged_rules(c["rules"])

    # ---- the referee ---------------------------------------------------------------------
    def compute(self, ev: dict[str, Any], session_id: uuid.UUID,
                rubric: dict[str, Any] | None = None) -> referee.Mark:
        frames = tq.session_frames(self.dsn, session_id)
        if frames is None:
            raise CompetitionError(f"session {session_id} has no stored frames")
        if ev.get("rubric") is None:
            raise CompetitionError("the competition is not open (rubrics not frozen)")
        return referee.compute_mark(frames, ev["exercise_id"], rubric or ev["rubric"],
                                    float(ev["sample_rate_hz"]))

    def score_heat(self, competition_id: str, heat_id: str) -> list[int]:
        """Official marks for every finished session of the heat that has none yet."""
        h = db.heat(self.dsn, competition_id, heat_id)
        if h is None:
            raise CompetitionError(f"no heat {heat_id!r}")
        ev = self.event(competition_id, h["event_id"])
        have = {m["competitor_id"] for m in db.marks(self.dsn, competition_id, ev["event_id"])}
        ids = []
        for e in db.heat_entries(self.dsn, competition_id, heat_id):
            if e["session_id"] is None or e["competitor_id"] in have:
                continue
            if db.session_state(self.dsn, e["session_id"]) not in FINISHED_STATES:
                continue
            m = self.compute(ev, e["session_id"])
            if m.rubric_sha256 != ev["rubric_sha256"]:
                raise CompetitionError("frozen rubric digest changed")  # never: same document
            ids.append(db.insert_mark(self.dsn, self._mark_row(
                competition_id, ev["event_id"], e, m, "official"), self.actor or "referee"))
        return ids

    @staticmethod
    def _mark_row(competition_id: str, event_id: str, e: dict[str, Any], m: referee.Mark,
                  purpose: str) -> dict[str, Any]:
        return {"competition_id": competition_id, "event_id": event_id,
                "heat_id": e["heat_id"], "competitor_id": e["competitor_id"],
                "site_id": e["site_id"], "session_id": e["session_id"], "purpose": purpose,
                "rubric_id": m.rubric_id, "rubric_version": m.rubric_version,
                "rubric_sha256": m.rubric_sha256, "kernel_version": m.kernel_version,
                "seq_lo": m.seq_lo, "seq_hi": m.seq_hi, "frames": m.frames,
                "data_sha256": m.data_sha256, "mark_sha256": m.mark_sha256, "score": m.score,
                "passed": m.passed, "result": m.result, "result_text": m.result_text}

    def recompute(self, mark_id: int) -> tuple[bool, list[str]]:
        """Re-compute a stored mark from the stored frames; (bit-identical?, differences)."""
        m = db.mark(self.dsn, mark_id)
        if m is None:
            raise CompetitionError(f"no mark {mark_id}")
        ev = self.event(m["competition_id"], m["event_id"])
        rubric = ev["rubric"] if m["purpose"] == "official" else None
        if rubric is None:  # an appeal mark: its rubric is in the appeal's audit row
            rubric = self._appeal_rubric(m)
        again = self.compute(ev, m["session_id"], rubric)
        diffs = [k for k, a, b in (
            ("data_sha256", m["data_sha256"], again.data_sha256),
            ("rubric_sha256", m["rubric_sha256"], again.rubric_sha256),
            ("kernel_version", m["kernel_version"], again.kernel_version),
            ("mark_sha256", m["mark_sha256"], again.mark_sha256),
            ("frames", int(m["frames"]), again.frames),
            ("score", float(m["score"]), again.score),
            ("result_text", m["result_text"], again.result_text)) if a != b]
        return not diffs, diffs

    def _appeal_rubric(self, m: dict[str, Any]) -> dict[str, Any]:
        for row in reversed(db.audit_trail(self.dsn, m["competition_id"])):
            if row["action"] == "appeal_rubric" and row["detail"].get("mark_sha256") == \
                    m["mark_sha256"]:
                doc: dict[str, Any] = row["detail"]["rubric"]
                return doc
        raise CompetitionError(f"no rubric recorded for appeal mark {m['mark_id']}")

    # ---- appeals -------------------------------------------------------------------------
    def appeal(self, competition_id: str, event_id: str, competitor_id: str,
               rubric: dict[str, Any], reason: str = "") -> dict[str, Any]:
        """Re-score from the stored data under ``rubric``; the official mark stays as it is."""
        official = next((m for m in db.marks(self.dsn, competition_id, event_id)
                         if m["competitor_id"] == competitor_id), None)
        if official is None:
            raise CompetitionError(f"{competitor_id} has no official mark in {event_id}")
        ev = self.event(competition_id, event_id)
        again = self.compute(ev, official["session_id"], rubric)
        entry = {"heat_id": official["heat_id"], "competitor_id": competitor_id,
                 "site_id": official["site_id"], "session_id": official["session_id"]}
        mark_id = db.insert_mark(self.dsn, self._mark_row(competition_id, event_id, entry,
                                                          again, "appeal"), self.actor)
        db.add_audit(self.dsn, competition_id, self.actor, "appeal_rubric",
                     {"mark_id": mark_id, "mark_sha256": again.mark_sha256, "rubric": rubric})
        diff = referee.difference(official["result"], again.result)
        appeal_id = db.insert_appeal(self.dsn, {
            "competition_id": competition_id, "event_id": event_id,
            "competitor_id": competitor_id, "reason": reason,
            "official_mark_id": int(official["mark_id"]), "appeal_mark_id": mark_id,
            "official_score": float(official["score"]), "appeal_score": again.score,
            "difference": diff}, self.actor)
        return {"appeal_id": appeal_id, "official_mark_id": int(official["mark_id"]),
                "appeal_mark_id": mark_id, "official_score": float(official["score"]),
                "appeal_score": again.score, "difference": diff}

    # ---- judges, leaderboards --------------------------------------------------------------
    def judge_mark(self, competition_id: str, event_id: str, competitor_id: str, aspect: str,
                   judge_id: str, value: int) -> None:
        r = self.rules_of(competition_id)
        if r["aspects"] and aspect not in r["aspects"]:
            raise CompetitionError(f"unknown aspect {aspect!r}; the rules list {r['aspects']}")
        db.put_judge_mark(self.dsn, competition_id, event_id, competitor_id, aspect, judge_id,
                          value)

    def leaderboard(self, competition_id: str, event_id: str,
                    heat_id: str | None = None) -> list[rules.Standing]:
        entries = [e for e in db.heat_entries(self.dsn, competition_id)
                   if e["event_id"] == event_id]
        marks = db.marks(self.dsn, competition_id, event_id) + [
            {"competitor_id": p["competitor_id"], "score": p["score"], "provisional": True,
             "result": {"components": {"time_in_window": p["time_in_window"]}}}
            for p in db.provisional_scores(self.dsn, competition_id, event_id)]
        return rules.leaderboard(
            db.competitors(self.dsn, competition_id), entries, marks,
            db.judge_marks(self.dsn, competition_id, event_id),
            self.rules_of(competition_id), heat_id)

    # ---- publication -----------------------------------------------------------------------
    def result_payload(self, competition_id: str, event_id: str) -> str:
        """The canonical result record of one event, rebuilt from the database rows."""
        ev = self.event(competition_id, event_id)
        marks = db.marks(self.dsn, competition_id, event_id)
        payload = {
            "competition_id": competition_id,
            "event_id": event_id,
            "exercise_id": ev["exercise_id"],
            "rubric": {"rubric_id": ev["rubric_id"], "version": int(ev["rubric_version"]),
                       "sha256": ev["rubric_sha256"]},
            "kernel_version": ev["kernel_version"],
            "rules": self.rules_of(competition_id),
            "standings": [s.to_dict() for s in self.leaderboard(competition_id, event_id)],
            "marks": [{k: (str(m[k]) if k == "session_id" else m[k]) for k in (
                "mark_id", "heat_id", "competitor_id", "site_id", "session_id", "seq_lo",
                "seq_hi", "frames", "data_sha256", "rubric_sha256", "kernel_version",
                "mark_sha256", "score", "passed")} | {
                "result_sha256": referee.sha256_text(m["result_text"])} for m in marks],
            "judge_marks": [{k: j[k] for k in ("competitor_id", "aspect", "judge_id", "mark")}
                            for j in db.judge_marks(self.dsn, competition_id, event_id)],
            "entries": [{k: (None if e[k] is None else str(e[k])) for k in (
                "heat_id", "competitor_id", "site_id", "rig_id", "session_id", "start_state",
                "reason")} for e in db.heat_entries(self.dsn, competition_id)
                if e["event_id"] == event_id],
        }
        return referee.canonical_json(payload)

    def publish(self, competition_id: str, event_id: str, key: SigningKey) -> str:
        payload = self.result_payload(competition_id, event_id)
        sig = key.sign(payload)
        db.publish(self.dsn, competition_id, event_id, payload, ALGORITHM, key.key_id, sig,
                   self.actor)
        return sig

    def verify(self, competition_id: str, event_id: str, key: SigningKey,
               recompute: bool = False) -> Verification:
        """Signature over the stored record, the record against the rows, optionally every
        mark re-computed from the stored frames."""
        pub = db.published(self.dsn, competition_id, event_id)
        if pub is None:
            raise CompetitionError(f"{event_id} is not published")
        problems: list[str] = []
        sig_ok = pub["algorithm"] == ALGORITHM and key.verify(pub["payload_text"],
                                                               pub["signature"], pub["key_id"])
        if not sig_ok:
            problems.append("signature does not verify over the stored result record")
        same = self.result_payload(competition_id, event_id) == pub["payload_text"]
        if not same:
            problems.append("the database rows no longer produce the signed record")
        n = 0
        if recompute:
            for m in db.marks(self.dsn, competition_id, event_id):
                ok, diffs = self.recompute(int(m["mark_id"]))
                n += 1
                if not ok:
                    problems.append(f"mark {m['mark_id']} re-computes differently: {diffs}")
        return Verification(not problems, sig_ok, same, n, problems)


def start_heat(svc: Competitions, coordinator: Any, competition_id: str, heat_id: str,
               rigs: dict[str, tuple[str, str]], tolerance_s: float | None = None,
               lead_s: float | None = None) -> Any:
    """Start a heat through ``coordinator`` and record it; ``rigs[competitor] = (site, rig)``.

    Returns the :class:`~lab_controller.competition.coordination.HeatStart` report.
    """
    from lab_controller.competition import coordination as co

    h = db.heat(svc.dsn, competition_id, heat_id)
    if h is None:
        raise CompetitionError(f"no heat {heat_id!r}")
    ev = svc.event(competition_id, h["event_id"])
    if ev.get("rubric") is None:
        raise CompetitionError("open the competition first (rubrics are frozen then)")
    plan = [co.EntryPlan(c, s, r) for c, (s, r) in rigs.items()]
    kw: dict[str, Any] = {}
    if tolerance_s is not None:
        kw["tolerance_s"] = tolerance_s
    if lead_s is not None:
        kw["lead_s"] = lead_s
    report: co.HeatStart = coordinator.start_heat(
        heat_id, plan, exercise_id=ev["exercise_id"], rubric_version=str(ev["rubric_version"]),
        duration_s=ev["duration_s"],
        params={"competition_id": competition_id, "scene": scene_for(ev["exercise_id"])}, **kw)
    spread = report.spread_s
    db.record_heat_start(
        svc.dsn, competition_id, heat_id, state=report.state,
        agreed_start_us=round(report.start_at * 1e6), tolerance_ms=1000 * report.tolerance_s,
        start_spread_ms=None if spread is None else 1000 * spread, sites=report.sites,
        entries=report.entries, detail={"lead_s": lead_s}, actor=svc.actor)
    return report
