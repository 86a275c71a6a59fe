"""Competition tables (migration 0010): the SQL behind ``lab_controller.competition``.

Short synchronous functions, one connection each, rows returned as plain dicts. Integrity
rules that the database can hold are held here: a competition's events are frozen by
:func:`open_competition` (refused twice), judge marks and official referee marks are refused
once the event's result is published, appeals add rows and never update the official mark.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


class CompetitionError(ValueError):
    """A request the competition's state does not allow (e.g. marking a published event)."""


def _dt(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=UTC)


def _rows(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return list(conn.execute(sql.encode(), params).fetchall())


def audit(conn: psycopg.Connection[Any], competition_id: str, actor: str, action: str,
          detail: Mapping[str, Any]) -> None:
    """Append one audit row (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO competition_audit (competition_id, actor, action, detail) "
        "VALUES (%s, %s, %s, %s)", (competition_id, actor, action, Jsonb(dict(detail))))


def add_audit(dsn: str, competition_id: str, actor: str, action: str,
              detail: Mapping[str, Any]) -> None:
    """Append one audit row in its own transaction."""
    with psycopg.connect(dsn) as conn:
        audit(conn, competition_id, actor, action, detail)


# ---- set-up ------------------------------------------------------------------------------
def create_competition(dsn: str, competition_id: str, name: str, rules: Mapping[str, Any],
                       actor: str = "") -> None:
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute("INSERT INTO competitions (competition_id, name, rules) "
                         "VALUES (%s, %s, %s)", (competition_id, name, Jsonb(dict(rules))))
        except psycopg.errors.UniqueViolation:
            raise CompetitionError(f"competition {competition_id!r} exists") from None
        audit(conn, competition_id, actor, "create", {"name": name, "rules": dict(rules)})


def add_event(dsn: str, competition_id: str, event_id: str, exercise_id: str, rubric_id: str,
              rubric_version: int, sample_rate_hz: float, duration_s: float | None) -> None:
    with psycopg.connect(dsn) as conn:
        _require_state(conn, competition_id, ("draft",))
        conn.execute(
            "INSERT INTO competition_events (competition_id, event_id, exercise_id, rubric_id, "
            "rubric_version, sample_rate_hz, duration_s) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (competition_id, event_id) DO UPDATE SET exercise_id = "
            "EXCLUDED.exercise_id, rubric_id = EXCLUDED.rubric_id, rubric_version = "
            "EXCLUDED.rubric_version, sample_rate_hz = EXCLUDED.sample_rate_hz, "
            "duration_s = EXCLUDED.duration_s",
            (competition_id, event_id, exercise_id, rubric_id, rubric_version, sample_rate_hz,
             duration_s))


def add_competitor(dsn: str, competition_id: str, competitor_id: str, bib: int,
                   site_id: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO competitors (competition_id, competitor_id, bib, site_id) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (competition_id, competitor_id) DO UPDATE "
            "SET bib = EXCLUDED.bib, site_id = EXCLUDED.site_id",
            (competition_id, competitor_id, bib, site_id))


def _require_state(conn: psycopg.Connection[Any], competition_id: str,
                   allowed: Iterable[str]) -> str:
    row = conn.execute("SELECT state FROM competitions WHERE competition_id = %s FOR UPDATE",
                       (competition_id,)).fetchone()
    if row is None:
        raise CompetitionError(f"no competition {competition_id!r}")
    state = str(row[0])
    if state not in tuple(allowed):
        raise CompetitionError(f"competition {competition_id!r} is {state}")
    return state


def rubric_document(dsn: str, rubric_id: str, version: int) -> dict[str, Any] | None:
    """The stored rubric document (``rubrics`` table), or None."""
    rows = _rows(dsn, "SELECT rubric FROM rubrics WHERE rubric_id = %s AND version = %s",
                 (rubric_id, version))
    return dict(rows[0]["rubric"]) if rows else None


def open_competition(dsn: str, competition_id: str,
                     frozen: Mapping[str, tuple[Mapping[str, Any], str, str]],
                     actor: str = "") -> None:
    """Freeze every event (``frozen[event_id] = (rubric, rubric_sha256, kernel_version)``)."""
    with psycopg.connect(dsn) as conn:
        _require_state(conn, competition_id, ("draft",))
        events = {str(r[0]) for r in conn.execute(
            "SELECT event_id FROM competition_events WHERE competition_id = %s",
            (competition_id,)).fetchall()}
        if not events or events != set(frozen):
            raise CompetitionError(f"freeze every event exactly: have {sorted(events)}, "
                                   f"got {sorted(frozen)}")
        for event_id, (rubric, sha, kernel) in frozen.items():
            conn.execute(
                "UPDATE competition_events SET rubric = %s, rubric_sha256 = %s, "
                "kernel_version = %s, frozen_at = now() WHERE competition_id = %s "
                "AND event_id = %s", (Jsonb(dict(rubric)), sha, kernel, competition_id, event_id))
        conn.execute("UPDATE competitions SET state = 'open', opened_at = now() "
                     "WHERE competition_id = %s", (competition_id,))
        audit(conn, competition_id, actor, "open",
              {e: {"rubric_sha256": f[1], "kernel_version": f[2]} for e, f in frozen.items()})


def set_state(dsn: str, competition_id: str, state: str, actor: str = "") -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE competitions SET state = %s WHERE competition_id = %s",
                     (state, competition_id))
        audit(conn, competition_id, actor, f"state:{state}", {})


def competition(dsn: str, competition_id: str) -> dict[str, Any] | None:
    rows = _rows(dsn, "SELECT * FROM competitions WHERE competition_id = %s", (competition_id,))
    return rows[0] if rows else None


def events(dsn: str, competition_id: str) -> list[dict[str, Any]]:
    return _rows(dsn, "SELECT * FROM competition_events WHERE competition_id = %s "
                      "ORDER BY event_id", (competition_id,))


def competitors(dsn: str, competition_id: str) -> list[dict[str, Any]]:
    return _rows(dsn, "SELECT * FROM competitors WHERE competition_id = %s ORDER BY bib",
                 (competition_id,))


# ---- heats and the coordinated start -----------------------------------------------------
def add_heat(dsn: str, competition_id: str, heat_id: str, event_id: str,
             planned_start_us: int | None = None) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO competition_heats (competition_id, heat_id, event_id, planned_start) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (competition_id, heat_id) DO UPDATE SET "
            "event_id = EXCLUDED.event_id, planned_start = EXCLUDED.planned_start",
            (competition_id, heat_id, event_id, _dt(planned_start_us)))


def heat(dsn: str, competition_id: str, heat_id: str) -> dict[str, Any] | None:
    rows = _rows(dsn, "SELECT * FROM competition_heats WHERE competition_id = %s AND "
                      "heat_id = %s", (competition_id, heat_id))
    return rows[0] if rows else None


def record_heat_start(dsn: str, competition_id: str, heat_id: str, *, state: str,
                      agreed_start_us: int | None, tolerance_ms: float,
                      start_spread_ms: float | None, sites: Sequence[Mapping[str, Any]],
                      entries: Sequence[Mapping[str, Any]], detail: Mapping[str, Any],
                      actor: str = "") -> None:
    """Store one heat's start: per-site clock checks, per-entry outcome, sessions tagged.

    ``sites``: ``site_id, clock_offset_ms, clock_rtt_ms, rigs_ready, rigs_failed, detail``.
    ``entries``: ``competitor_id, site_id, rig_id, session_id, start_state, reason,
    start_time_us, start_offset_ms``.
    """
    with psycopg.connect(dsn) as conn:
        _require_state(conn, competition_id, ("open",))
        conn.execute(
            "UPDATE competition_heats SET state = %s, agreed_start = %s, tolerance_ms = %s, "
            "start_spread_ms = %s, detail = %s WHERE competition_id = %s AND heat_id = %s",
            (state, _dt(agreed_start_us), tolerance_ms, start_spread_ms, Jsonb(dict(detail)),
             competition_id, heat_id))
        for s in sites:
            conn.execute(
                "INSERT INTO competition_heat_sites (competition_id, heat_id, site_id, "
                "clock_offset_ms, clock_rtt_ms, rigs_ready, rigs_failed, detail) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (competition_id, heat_id, site_id) "
                "DO UPDATE SET clock_offset_ms = EXCLUDED.clock_offset_ms, clock_rtt_ms = "
                "EXCLUDED.clock_rtt_ms, rigs_ready = EXCLUDED.rigs_ready, rigs_failed = "
                "EXCLUDED.rigs_failed, detail = EXCLUDED.detail",
                (competition_id, heat_id, s["site_id"], s.get("clock_offset_ms"),
                 s.get("clock_rtt_ms"), int(s.get("rigs_ready", 0)),
                 int(s.get("rigs_failed", 0)), Jsonb(dict(s.get("detail", {})))))
            # The site's latest measured clock offset is kept with the site (0001 sites).
            conn.execute("UPDATE sites SET clock_offset_ms = %s WHERE site_id = %s",
                         (s.get("clock_offset_ms"), s["site_id"]))
        for e in entries:
            sid = e.get("session_id")
            conn.execute(
                "INSERT INTO heat_entries (competition_id, heat_id, competitor_id, site_id, "
                "rig_id, session_id, start_state, reason, start_time, start_offset_ms) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (competition_id, heat_id, "
                "competitor_id) DO UPDATE SET site_id = EXCLUDED.site_id, rig_id = "
                "EXCLUDED.rig_id, session_id = EXCLUDED.session_id, start_state = "
                "EXCLUDED.start_state, reason = EXCLUDED.reason, start_time = "
                "EXCLUDED.start_time, start_offset_ms = EXCLUDED.start_offset_ms",
                (competition_id, heat_id, e["competitor_id"], e["site_id"], e["rig_id"],
                 None if sid is None else uuid.UUID(str(sid)), e["start_state"],
                 str(e.get("reason", "")), _dt(e.get("start_time_us")),
                 e.get("start_offset_ms")))
            if sid is not None:
                # Tag the session (the site's writer may not have created its row yet).
                conn.execute(
                    "INSERT INTO sessions (session_id, site_id, rig_id, trainee_id, "
                    "competition_id, heat_id) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (session_id) DO UPDATE SET competition_id = "
                    "EXCLUDED.competition_id, heat_id = EXCLUDED.heat_id",
                    (uuid.UUID(str(sid)), e["site_id"], e["rig_id"], e["competitor_id"],
                     competition_id, heat_id))
        audit(conn, competition_id, actor, "heat_start",
              {"heat_id": heat_id, "state": state, "start_spread_ms": start_spread_ms,
               "entries": [{"competitor_id": e["competitor_id"], "start_state": e["start_state"],
                            "reason": e.get("reason", "")} for e in entries]})


def set_heat_state(dsn: str, competition_id: str, heat_id: str, state: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE competition_heats SET state = %s WHERE competition_id = %s AND "
                     "heat_id = %s", (state, competition_id, heat_id))


def heat_entries(dsn: str, competition_id: str, heat_id: str | None = None
                 ) -> list[dict[str, Any]]:
    return _rows(
        dsn, "SELECT e.*, h.event_id, c.bib FROM heat_entries e JOIN competition_heats h "
             "USING (competition_id, heat_id) LEFT JOIN competitors c USING (competition_id, "
             "competitor_id) WHERE e.competition_id = %s AND (%s::text IS NULL OR "
             "e.heat_id = %s) ORDER BY e.heat_id, c.bib", (competition_id, heat_id, heat_id))


def heat_sites(dsn: str, competition_id: str, heat_id: str) -> list[dict[str, Any]]:
    return _rows(dsn, "SELECT * FROM competition_heat_sites WHERE competition_id = %s AND "
                      "heat_id = %s ORDER BY site_id", (competition_id, heat_id))


def session_state(dsn: str, session_id: uuid.UUID) -> str | None:
    rows = _rows(dsn, "SELECT state FROM sessions WHERE session_id = %s", (session_id,))
    return str(rows[0]["state"]) if rows else None


# ---- referee marks, judge marks, appeals -------------------------------------------------
def _published(conn: psycopg.Connection[Any], competition_id: str, event_id: str) -> bool:
    return conn.execute("SELECT 1 FROM competition_results WHERE competition_id = %s AND "
                        "event_id = %s", (competition_id, event_id)).fetchone() is not None


def insert_mark(dsn: str, mark: Mapping[str, Any], actor: str = "referee") -> int:
    """Store one referee mark (``purpose`` official or appeal); returns its ``mark_id``."""
    cols = ("competition_id", "event_id", "heat_id", "competitor_id", "site_id", "session_id",
            "purpose", "rubric_id", "rubric_version", "rubric_sha256", "kernel_version",
            "seq_lo", "seq_hi", "frames", "data_sha256", "mark_sha256", "score", "passed",
            "result", "result_text")
    values = [Jsonb(mark[c]) if c == "result" else mark[c] for c in cols]
    with psycopg.connect(dsn) as conn:
        if mark["purpose"] == "official" and _published(conn, mark["competition_id"],
                                                         mark["event_id"]):
            raise CompetitionError("the event's result is published; official marks are frozen")
        try:
            row = conn.execute(
                f"INSERT INTO referee_marks ({', '.join(cols)}) VALUES "
                f"({', '.join(['%s'] * len(cols))}) RETURNING mark_id", values).fetchone()
        except psycopg.errors.UniqueViolation:
            raise CompetitionError(f"{mark['competitor_id']} already has an official mark in "
                                   f"{mark['event_id']}; an appeal adds a mark instead") from None
        assert row is not None
        audit(conn, mark["competition_id"], actor, f"mark:{mark['purpose']}",
              {"mark_id": int(row[0]), "competitor_id": mark["competitor_id"],
               "event_id": mark["event_id"], "score": mark["score"],
               "mark_sha256": mark["mark_sha256"]})
        return int(row[0])


def marks(dsn: str, competition_id: str, event_id: str | None = None,
          purpose: str = "official") -> list[dict[str, Any]]:
    return _rows(dsn, "SELECT * FROM referee_marks WHERE competition_id = %s AND "
                      "(%s::text IS NULL OR event_id = %s) AND purpose = %s ORDER BY mark_id",
                 (competition_id, event_id, event_id, purpose))


def mark(dsn: str, mark_id: int) -> dict[str, Any] | None:
    rows = _rows(dsn, "SELECT * FROM referee_marks WHERE mark_id = %s", (mark_id,))
    return rows[0] if rows else None


def put_judge_mark(dsn: str, competition_id: str, event_id: str, competitor_id: str,
                   aspect: str, judge_id: str, value: int) -> None:
    if not 0 <= value <= 3:
        raise CompetitionError("a judgement mark is 0, 1, 2 or 3")
    with psycopg.connect(dsn) as conn:
        _require_state(conn, competition_id, ("open", "closed"))
        if _published(conn, competition_id, event_id):
            raise CompetitionError("the event's result is published; judge marks are frozen")
        known = conn.execute("SELECT 1 FROM competitors WHERE competition_id = %s AND "
                             "competitor_id = %s", (competition_id, competitor_id)).fetchone()
        if known is None:
            raise CompetitionError(f"no competitor {competitor_id!r}")
        conn.execute(
            "INSERT INTO judge_marks (competition_id, event_id, competitor_id, aspect, judge_id, "
            "mark) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (competition_id, event_id, "
            "competitor_id, aspect, judge_id) DO UPDATE SET mark = EXCLUDED.mark, "
            "entered_at = now()", (competition_id, event_id, competitor_id, aspect, judge_id,
                                   value))
        audit(conn, competition_id, judge_id, "judge_mark",
              {"event_id": event_id, "competitor_id": competitor_id, "aspect": aspect,
               "mark": value})


def judge_marks(dsn: str, competition_id: str, event_id: str | None = None
                ) -> list[dict[str, Any]]:
    return _rows(dsn, "SELECT * FROM judge_marks WHERE competition_id = %s AND (%s::text IS "
                      "NULL OR event_id = %s) ORDER BY competitor_id, aspect, judge_id",
                 (competition_id, event_id, event_id))


def insert_appeal(dsn: str, appeal: Mapping[str, Any], actor: str = "") -> int:
    cols = ("competition_id", "event_id", "competitor_id", "reason", "official_mark_id",
            "appeal_mark_id", "official_score", "appeal_score", "difference")
    values = [Jsonb(appeal[c]) if c == "difference" else appeal[c] for c in cols]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"INSERT INTO appeals ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
            "RETURNING appeal_id", values).fetchone()
        assert row is not None
        audit(conn, appeal["competition_id"], actor, "appeal",
              {"appeal_id": int(row[0]), "competitor_id": appeal["competitor_id"],
               "official_score": appeal["official_score"],
               "appeal_score": appeal["appeal_score"]})
        return int(row[0])


def appeals(dsn: str, competition_id: str) -> list[dict[str, Any]]:
    return _rows(dsn, "SELECT * FROM appeals WHERE competition_id = %s ORDER BY appeal_id",
                 (competition_id,))


# ---- publication -------------------------------------------------------------------------
def publish(dsn: str, competition_id: str, event_id: str, payload_text: str, algorithm: str,
            key_id: str, signature: str, actor: str = "") -> None:
    with psycopg.connect(dsn) as conn:
        if _published(conn, competition_id, event_id):
            raise CompetitionError(f"{event_id} is already published")
        conn.execute(
            "INSERT INTO competition_results (competition_id, event_id, payload_text, "
            "algorithm, key_id, signature) VALUES (%s, %s, %s, %s, %s, %s)",
            (competition_id, event_id, payload_text, algorithm, key_id, signature))
        audit(conn, competition_id, actor, "publish",
              {"event_id": event_id, "algorithm": algorithm, "key_id": key_id,
               "signature": signature})


def published(dsn: str, competition_id: str, event_id: str) -> dict[str, Any] | None:
    rows = _rows(dsn, "SELECT * FROM competition_results WHERE competition_id = %s AND "
                      "event_id = %s", (competition_id, event_id))
    return rows[0] if rows else None


def audit_trail(dsn: str, competition_id: str) -> list[dict[str, Any]]:
    return _rows(dsn, "SELECT * FROM competition_audit WHERE competition_id = %s "
                      "ORDER BY audit_id", (competition_id,))


def provisional_scores(dsn: str, competition_id: str, event_id: str) -> list[dict[str, Any]]:
    """Live measured scores of an event's competitors that have no official mark yet.

    The pipeline's final result when the session has one (``results``, newest), else the mean
    window score so far (``score_windows``): what the live leaderboard shows until the referee
    marks from the stored samples.
    """
    return _rows(dsn, PROVISIONAL_SQL, (competition_id, event_id))


PROVISIONAL_SQL = """
SELECT e.competitor_id,
       coalesce(r.final_score::float8, w.score) AS score,
       (r.components->>'time_in_window')::float8 AS time_in_window,
       CASE WHEN r.final_score IS NOT NULL THEN 'result' ELSE 'windows' END AS source
FROM heat_entries e
JOIN competition_heats h USING (competition_id, heat_id)
LEFT JOIN LATERAL (
    SELECT final_score, components FROM results
    WHERE session_id = e.session_id ORDER BY scored_at DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (
    SELECT avg(window_score)::float8 AS score FROM score_windows
    WHERE session_id = e.session_id AND window_score = window_score) w ON true
WHERE e.competition_id = %s AND h.event_id = %s AND e.session_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM referee_marks m WHERE m.competition_id = e.competition_id
                  AND m.event_id = h.event_id AND m.competitor_id = e.competitor_id
                  AND m.purpose = 'official')
  AND coalesce(r.final_score::float8, w.score) IS NOT NULL
"""
