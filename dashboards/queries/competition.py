"""Competition dashboard: live standings per event/heat, starts, judge marks, appeals.

Table names are those of telemetry migration 0010 (``telemetry/competition.py`` holds the
writes); the standings reproduce ``lab_controller.competition.rules`` in SQL — the total,
the provisional (live) measured score until the referee's mark, the judgement rule (mean of
three 0-3 marks / 3 per aspect, counted once every aspect has ``judges_required`` marks) and
the tie-break (total, measurement, judgement, time in window, each at 2 decimals; equal keys
share a rank). tests/competition checks both agree.
"""

from __future__ import annotations

from dashboards.common import Query

COMPETITIONS = Query(
    "competition.COMPETITIONS",
    """
SELECT competition_id AS __value, coalesce(nullif(name, ''), competition_id) AS __text
FROM competitions
ORDER BY created_at DESC
""",
)

EVENTS = Query(
    "competition.EVENTS",
    """
SELECT event_id AS __value, event_id || ' (' || exercise_id || ')' AS __text
FROM competition_events
WHERE competition_id = '$competition'
ORDER BY 1
""",
)

HEATS = Query(
    "competition.HEATS",
    """
SELECT heat_id AS __value, heat_id AS __text
FROM competition_heats
WHERE competition_id = '$competition' AND event_id = '$event'
ORDER BY 1
""",
)

_STANDINGS = """
WITH rules AS (
  SELECT coalesce((rules->>'judgement_weight')::float8, 0.2) AS w,
         coalesce((rules->>'judges_required')::int, 3) AS judges,
         coalesce(jsonb_array_length(rules->'aspects'), 0) AS n_aspects
  FROM competitions WHERE competition_id = '$competition'
), aspect AS (
  SELECT j.competitor_id, j.aspect, avg(j.mark) / 3.0 AS value, count(*) AS n,
         max(j.mark) - min(j.mark) AS spread
  FROM judge_marks j
  WHERE j.competition_id = '$competition' AND j.event_id = '$event'
  GROUP BY 1, 2
), judged AS (
  SELECT a.competitor_id,
         CASE WHEN count(*) FILTER (WHERE a.n >= r.judges) = r.n_aspects AND r.n_aspects > 0
              THEN 100.0 * avg(a.value) END AS judgement,
         bool_or(a.spread > 1) AS needs_review
  FROM aspect a CROSS JOIN rules r
  GROUP BY a.competitor_id, r.judges, r.n_aspects
), rows AS (
  SELECT e.heat_id, c.bib, c.competitor_id, c.site_id, e.start_state, e.reason,
         coalesce(m.score, pr.score, pw.score) AS measurement, jd.judgement,
         coalesce((m.result->'components'->>'time_in_window')::float8, pr.tiw)
           AS time_in_window,
         round(((1 - r.w) * coalesce(m.score, pr.score, pw.score)
                + r.w * coalesce(jd.judgement, 0))::numeric, 2) AS total,
         m.mark_id IS NULL AS provisional,
         coalesce(jd.needs_review, false) AS needs_review
  FROM heat_entries e
  JOIN competition_heats h USING (competition_id, heat_id)
  JOIN competitors c USING (competition_id, competitor_id)
  CROSS JOIN rules r
  LEFT JOIN referee_marks m ON m.competition_id = e.competition_id
       AND m.event_id = h.event_id AND m.competitor_id = e.competitor_id
       AND m.purpose = 'official'
  -- live until the referee marks: the pipeline's final result, else the mean window score
  -- (windows within the dashboard's time range)
  LEFT JOIN LATERAL (
    SELECT x.final_score::float8 AS score, (x.components->>'time_in_window')::float8 AS tiw
    FROM results x WHERE x.session_id = e.session_id
    ORDER BY x.scored_at DESC LIMIT 1) pr ON m.mark_id IS NULL
  LEFT JOIN LATERAL (
    SELECT avg(sw.window_score)::float8 AS score FROM score_windows sw
    WHERE sw.session_id = e.session_id AND $__timeFilter(sw.time)
      AND sw.window_score = sw.window_score) pw ON m.mark_id IS NULL AND pr.score IS NULL
  LEFT JOIN judged jd ON jd.competitor_id = e.competitor_id
  WHERE e.competition_id = '$competition' AND h.event_id = '$event'{heat_filter}
)
SELECT CASE WHEN total IS NOT NULL THEN rank() OVER (
         ORDER BY total DESC NULLS LAST, round(measurement::numeric, 2) DESC NULLS LAST,
                  round(judgement::numeric, 2) DESC NULLS LAST,
                  round(time_in_window::numeric, 2) DESC NULLS LAST) END AS rank,
       bib, competitor_id, site_id, heat_id, total,
       round(measurement::numeric, 2) AS measured, round(judgement::numeric, 2) AS judged,
       CASE WHEN total IS NULL THEN start_state || ': ' || reason
            WHEN provisional THEN 'provisional (live, not yet marked by the referee)'
            WHEN needs_review THEN 'judges differ by more than 1: review'
            WHEN judgement IS NULL THEN 'judge marks pending' ELSE '' END AS note
FROM rows
ORDER BY total DESC NULLS LAST, 1, bib
"""

STANDINGS = Query("competition.STANDINGS", _STANDINGS.replace("{heat_filter}", ""))

HEAT_STANDINGS = Query("competition.HEAT_STANDINGS",
                       _STANDINGS.replace("{heat_filter}", " AND e.heat_id IN ($heat)"))

STARTS = Query(
    "competition.STARTS",
    """
-- Every competitor's start, late and failed rigs with their reason (never dropped).
SELECT e.heat_id, c.bib, e.competitor_id, e.site_id, e.rig_id, e.start_state,
       round(e.start_offset_ms::numeric, 1) AS offset_ms, e.reason
FROM heat_entries e
JOIN competition_heats h USING (competition_id, heat_id)
LEFT JOIN competitors c USING (competition_id, competitor_id)
WHERE e.competition_id = '$competition' AND h.event_id = '$event' AND e.heat_id IN ($heat)
  AND e.site_id IN ($site)
ORDER BY e.heat_id, c.bib
""",
)

SPREAD = Query(
    "competition.SPREAD",
    """
SELECT max(start_spread_ms) AS start_spread_ms, max(tolerance_ms) AS tolerance_ms
FROM competition_heats
WHERE competition_id = '$competition' AND event_id = '$event' AND heat_id IN ($heat)
""",
)

SITE_CLOCKS = Query(
    "competition.SITE_CLOCKS",
    """
SELECT s.heat_id, s.site_id, round(s.clock_offset_ms::numeric, 2) AS clock_offset_ms,
       round(s.clock_rtt_ms::numeric, 3) AS clock_rtt_ms, s.rigs_ready, s.rigs_failed
FROM competition_heat_sites s
JOIN competition_heats h USING (competition_id, heat_id)
WHERE s.competition_id = '$competition' AND h.event_id = '$event' AND s.heat_id IN ($heat)
  AND s.site_id IN ($site)
ORDER BY 1, 2
""",
)

JUDGE_MARKS = Query(
    "competition.JUDGE_MARKS",
    """
SELECT c.bib, j.competitor_id, j.aspect,
       string_agg(j.judge_id || '=' || j.mark, ', ' ORDER BY j.judge_id) AS marks,
       count(*) AS judges, round(avg(j.mark)::numeric, 3) AS mean,
       max(j.mark) - min(j.mark) AS spread
FROM judge_marks j
LEFT JOIN competitors c USING (competition_id, competitor_id)
WHERE j.competition_id = '$competition' AND j.event_id = '$event'
GROUP BY 1, 2, 3
ORDER BY 1, 3
""",
)

APPEALS = Query(
    "competition.APPEALS",
    """
-- Appeals re-score from the stored data; the official (frozen) mark is never changed.
SELECT a.appeal_id, c.bib, a.competitor_id, a.state, round(a.official_score::numeric, 2)
       AS official, round(a.appeal_score::numeric, 2) AS appeal,
       round((a.appeal_score - a.official_score)::numeric, 2) AS delta, a.reason, a.created_at
FROM appeals a
LEFT JOIN competitors c USING (competition_id, competitor_id)
WHERE a.competition_id = '$competition' AND a.event_id = '$event'
ORDER BY a.appeal_id
""",
)
