"""Live class: one tile per rig, class summary, recent trends and cues.

"Now" is `$__timeTo()` rather than `now()`: the dashboard's range ends at now (refresh 5 s),
and the same SQL can be replayed for any past moment (tests, incident review).
"""

from __future__ import annotations

from typing import Final

from dashboards.common import Query
from telemetry.schema import Cues as CU
from telemetry.schema import PoseRate1S as PR
from telemetry.schema import ScoreWindowParams as P
from telemetry.schema import ScoreWindows as W
from telemetry.schema import Sessions as S

STRUGGLE_WINDOW_S: Final = 10
"""Look-back for "struggling" (issue 7: more than 30% of the last 10 s out of window)."""
STRUGGLE_OUT_PCT: Final = 30
"""Per cent of the look-back outside the tolerance window that marks a trainee struggling."""
STALE_AFTER_S: Final = 3
"""Seconds without a stored sample before a running rig counts as silent: the controller
declares a rig dead after 3 missed 1 s heartbeats (architecture notes), so data older than
that is not a hiccup."""

STATUS_OK, STATUS_STRUGGLING, STATUS_NO_DATA, STATUS_IDLE = 0, 1, 2, 3

# The current session of each rig: the newest one overlapping the range.
_CURRENT = f"""
cur AS (
  SELECT DISTINCT ON (s.{S.rig_id}) s.{S.session_id}, s.{S.rig_id}, s.{S.trainee_id},
         s.{S.exercise_id}, s.{S.state}
  FROM {S.TABLE} s
  WHERE s.{S.site_id} IN ($site) AND s.{S.class_id} IN ($class) AND s.{S.rig_id} IN ($rig)
    AND s.{S.started_at} <= $__timeTo()
    AND (s.{S.ended_at} IS NULL OR s.{S.ended_at} >= $__timeFrom())
  ORDER BY s.{S.rig_id}, s.{S.started_at} DESC
)"""

# Per window, the worst parameter's share outside its band; averaged over the look-back
# (windows have equal length) this is the share of the last 10 s with something out.
_RECENT = f"""
recent AS (
  SELECT p.{P.session_id}, p.{P.window_idx}, p.{P.param}, 1 - p.{P.frac_in_window} AS out_frac
  FROM {P.TABLE} p JOIN cur USING ({P.session_id})
  WHERE p.{P.time} > $__timeTo()::timestamptz - interval '{STRUGGLE_WINDOW_S} seconds'
    AND p.{P.time} <= $__timeTo()
),
per_window AS (
  SELECT {P.session_id}, {P.window_idx}, max(out_frac) AS worst FROM recent GROUP BY 1, 2
),
per_param AS (
  SELECT {P.session_id}, {P.param}, avg(out_frac) AS out_frac FROM recent GROUP BY 1, 2
),
struggle AS (
  SELECT w.{P.session_id}, 100 * avg(w.worst) AS out_pct,
         (SELECT string_agg(pp.{P.param}, ', ' ORDER BY pp.out_frac DESC) FROM per_param pp
          WHERE pp.{P.session_id} = w.{P.session_id}
            AND pp.out_frac * 100 > {STRUGGLE_OUT_PCT}) AS out_params
  FROM per_window w GROUP BY 1
),
latest AS (
  SELECT DISTINCT ON (w.{W.session_id}) w.{W.session_id}, w.{W.progress}, w.{W.window_score}
  FROM {W.TABLE} w JOIN cur USING ({W.session_id})
  WHERE $__timeFilter(w.{W.time})
  ORDER BY w.{W.session_id}, w.{W.time} DESC
),
seen AS (
  SELECT r.{PR.session_id}, max(r.{PR.last_time}) AS last_time
  FROM {PR.TABLE} r JOIN cur USING ({PR.session_id})
  WHERE r.{PR.bucket} <= $__timeTo() AND r.{PR.bucket} > $__timeFrom()::timestamptz - interval '1 minute'
  GROUP BY 1
)"""

_TILE_COLUMNS = f"""
  cur.{S.rig_id} AS rig,
  coalesce(cur.{S.trainee_id}, '-') AS trainee,
  coalesce(cur.{S.exercise_id}, '-') AS exercise,
  CASE
    WHEN cur.{S.state} NOT IN ('running', 'stopping') THEN {STATUS_IDLE}
    WHEN seen.last_time IS NULL
      OR $__timeTo()::timestamptz - seen.last_time > interval '{STALE_AFTER_S} seconds'
      THEN {STATUS_NO_DATA}
    WHEN struggle.out_pct > {STRUGGLE_OUT_PCT} THEN {STATUS_STRUGGLING}
    ELSE {STATUS_OK}
  END AS status,
  100 * latest.{W.progress} AS progress,
  latest.{W.window_score} AS score,
  struggle.out_pct AS out_of_window,
  coalesce(struggle.out_params, '') AS params_out,
  extract(epoch from ($__timeTo()::timestamptz - seen.last_time)) AS since_sample"""

RIG_TILES = Query(
    "live.RIG_TILES",
    f"""
-- One row per rig: who, what, how far, how well, what is out of window, how fresh the data.
WITH {_CURRENT},{_RECENT}
SELECT {_TILE_COLUMNS}
FROM cur
LEFT JOIN struggle USING ({S.session_id})
LEFT JOIN latest USING ({S.session_id})
LEFT JOIN seen USING ({S.session_id})
ORDER BY cur.{S.rig_id}
""",
)

CLASS_SUMMARY = Query(
    "live.CLASS_SUMMARY",
    f"""
WITH {_CURRENT},{_RECENT},
tiles AS (
  SELECT {_TILE_COLUMNS}
  FROM cur
  LEFT JOIN struggle USING ({S.session_id})
  LEFT JOIN latest USING ({S.session_id})
  LEFT JOIN seen USING ({S.session_id})
)
SELECT count(*) FILTER (WHERE status <> {STATUS_IDLE}) AS running,
       count(*) FILTER (WHERE status = {STATUS_STRUGGLING}) AS struggling,
       count(*) FILTER (WHERE status = {STATUS_NO_DATA}) AS no_data,
       avg(score) AS mean_score
FROM tiles
""",
)

SCORE_TREND = Query(
    "live.SCORE_TREND",
    f"""
SELECT $__timeGroupAlias(w.{W.time}, $__interval),
       s.{S.rig_id} || ' ' || coalesce(s.{S.trainee_id}, '') AS metric,
       avg(w.{W.window_score}) AS score
FROM {W.TABLE} w JOIN {S.TABLE} s USING ({W.session_id})
WHERE $__timeFilter(w.{W.time})
  AND s.{S.site_id} IN ($site) AND s.{S.class_id} IN ($class) AND s.{S.rig_id} IN ($rig)
GROUP BY 1, 2
ORDER BY 1
""",
    "time_series",
)

OUT_OF_WINDOW_TREND = Query(
    "live.OUT_OF_WINDOW_TREND",
    f"""
-- Worst parameter's share outside its band, per rig.
SELECT $__timeGroupAlias(p.{P.time}, $__interval),
       s.{S.rig_id} AS metric,
       100 * max(1 - p.{P.frac_in_window}) AS out_of_window
FROM {P.TABLE} p JOIN {S.TABLE} s USING ({P.session_id})
WHERE $__timeFilter(p.{P.time})
  AND s.{S.site_id} IN ($site) AND s.{S.class_id} IN ($class) AND s.{S.rig_id} IN ($rig)
GROUP BY 1, 2
ORDER BY 1
""",
    "time_series",
)

RECENT_CUES = Query(
    "live.RECENT_CUES",
    f"""
SELECT c.{CU.time} AS "time", c.{CU.rig_id} AS rig, s.{S.trainee_id} AS trainee,
       c.{CU.param} AS param, c.{CU.kind} AS kind, c.{CU.severity} AS severity,
       c.{CU.message} AS message
FROM {CU.TABLE} c JOIN {S.TABLE} s USING ({CU.session_id})
WHERE $__timeFilter(c.{CU.time})
  AND s.{S.site_id} IN ($site) AND s.{S.class_id} IN ($class) AND s.{S.rig_id} IN ($rig)
ORDER BY c.{CU.time} DESC
LIMIT 50
""",
)
