"""Trainee progress: sessions over time per exercise, score trend, level reached, weak spots."""

from __future__ import annotations

from dashboards.common import Query
from telemetry.schema import ResultMetrics as RM
from telemetry.schema import Results as R
from telemetry.schema import Rubrics as RB
from telemetry.schema import Sessions as S

# Results as first scored: the rubric version each session ran with (re-scores excluded).
_SCORED = f"""
scored AS (
  SELECT s.{S.session_id}, s.{S.started_at}, s.{S.ended_at}, s.{S.exercise_id},
         r.{R.final_score}, r.{R.passed}, r.{R.level}, r.{R.rubric_id}, r.{R.rubric_version}
  FROM {S.TABLE} s
  JOIN {R.TABLE} r ON r.{R.session_id} = s.{S.session_id}
   AND r.{R.rubric_id} = s.{S.rubric_id} AND r.{R.rubric_version} = s.{S.rubric_version}
  WHERE s.{S.trainee_id} = '$trainee' AND s.{S.site_id} IN ($site)
    AND s.{S.exercise_id} IN ($exercise) AND $__timeFilter(s.{S.started_at})
)"""

SUMMARY = Query(
    "trainee.SUMMARY",
    f"""
WITH {_SCORED}
SELECT count(*) AS sessions,
       100.0 * avg(CASE WHEN {R.passed} THEN 1 ELSE 0 END) AS pass_rate,
       max({R.final_score}) AS best_score,
       sum(extract(epoch from ({S.ended_at} - {S.started_at}))) AS practice_time
FROM scored
""",
)

SCORE_TREND = Query(
    "trainee.SCORE_TREND",
    f"""
WITH {_SCORED}
SELECT {S.started_at} AS "time", {S.exercise_id} AS metric, {R.final_score} AS score
FROM scored
ORDER BY 1
""",
    "time_series",
)

SESSIONS_PER_DAY = Query(
    "trainee.SESSIONS_PER_DAY",
    f"""
SELECT $__timeGroupAlias(s.{S.started_at}, '1d'), s.{S.exercise_id} AS metric,
       count(*) AS sessions
FROM {S.TABLE} s
WHERE s.{S.trainee_id} = '$trainee' AND s.{S.site_id} IN ($site)
  AND s.{S.exercise_id} IN ($exercise) AND $__timeFilter(s.{S.started_at})
GROUP BY 1, 2
ORDER BY 1
""",
    "time_series",
)

LEVELS = Query(
    "trainee.LEVELS",
    f"""
-- Per exercise: sessions, passes, best and latest score, level of the best passed session.
WITH {_SCORED}
SELECT {S.exercise_id} AS exercise,
       count(*) AS sessions,
       count(*) FILTER (WHERE {R.passed}) AS passed,
       max({R.final_score}) AS best_score,
       (array_agg({R.final_score} ORDER BY {S.started_at} DESC))[1] AS latest_score,
       coalesce((array_agg({R.level} ORDER BY {R.final_score} DESC)
                 FILTER (WHERE {R.passed} AND {R.level} IS NOT NULL))[1], '-') AS level
FROM scored
GROUP BY 1
ORDER BY 1
""",
)

WEAKEST_PARAMS = Query(
    "trainee.WEAKEST_PARAMS",
    f"""
-- Lowest mean metric score first: what to practise next.
WITH {_SCORED}
SELECT m.{RM.metric} AS metric, avg(m.{RM.score}) AS mean_score,
       100 * avg(m.{RM.time_in_window}) AS in_window
FROM {RM.TABLE} m
JOIN scored USING ({RM.session_id}, {RM.rubric_id}, {RM.rubric_version})
GROUP BY 1
ORDER BY 2
LIMIT 10
""",
)

SESSIONS = Query(
    "trainee.SESSIONS",
    f"""
WITH {_SCORED}
SELECT {S.started_at} AS "time", {S.session_id}::text AS session, {S.exercise_id} AS exercise,
       {R.final_score} AS score, CASE WHEN {R.passed} THEN 'pass' ELSE 'fail' END AS result,
       coalesce({R.level}, '-') AS level,
       extract(epoch from ({S.ended_at} - {S.started_at})) AS duration,
       {R.rubric_id} || ' v' || {R.rubric_version} AS rubric,
       (SELECT rb.{RB.pass_mark} FROM {RB.TABLE} rb
         WHERE rb.{RB.rubric_id} = scored.{R.rubric_id}
           AND rb.{RB.version} = scored.{R.rubric_version}) AS pass_mark
FROM scored
ORDER BY 1 DESC
""",
)
