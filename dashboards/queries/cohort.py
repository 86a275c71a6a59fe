"""Cohort and research: distributions, pass rates, failing parameters, levels, rubric versions."""

from __future__ import annotations

from dashboards.common import Query
from telemetry.schema import Classes as C
from telemetry.schema import ResultMetrics as RM
from telemetry.schema import Results as R
from telemetry.schema import Rubrics as RB
from telemetry.schema import Sessions as S
from telemetry.schema import Sites as SI

# Each session once, scored with the rubric version it ran with.
_SCORED = f"""
scored AS (
  SELECT s.{S.session_id}, s.{S.site_id}, s.{S.class_id}, s.{S.trainee_id}, s.{S.exercise_id},
         s.{S.started_at}, r.{R.rubric_id}, r.{R.rubric_version}, r.{R.final_score},
         r.{R.passed}, r.{R.level}
  FROM {S.TABLE} s
  JOIN {R.TABLE} r ON r.{R.session_id} = s.{S.session_id}
   AND r.{R.rubric_id} = s.{S.rubric_id} AND r.{R.rubric_version} = s.{S.rubric_version}
  WHERE s.{S.site_id} IN ($site) AND s.{S.class_id} IN ($class)
    AND s.{S.exercise_id} IN ($exercise) AND $__timeFilter(s.{S.started_at})
)"""

SUMMARY = Query(
    "cohort.SUMMARY",
    f"""
WITH {_SCORED}
SELECT count(*) AS sessions, count(DISTINCT {S.trainee_id}) AS trainees,
       100.0 * avg(CASE WHEN {R.passed} THEN 1 ELSE 0 END) AS pass_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {R.final_score}) AS median_score
FROM scored
""",
)

SCORE_DISTRIBUTION = Query(
    "cohort.SCORE_DISTRIBUTION",
    f"""
WITH {_SCORED}
SELECT {R.final_score} AS score FROM scored
""",
)

_QUARTILES = f"""
       percentile_cont(0.25) WITHIN GROUP (ORDER BY {R.final_score}) AS p25,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {R.final_score}) AS median,
       percentile_cont(0.75) WITHIN GROUP (ORDER BY {R.final_score}) AS p75,
       100.0 * avg(CASE WHEN {R.passed} THEN 1 ELSE 0 END) AS pass_rate,
       count(*) AS sessions"""

BY_CLASS = Query(
    "cohort.BY_CLASS",
    f"""
WITH {_SCORED}
SELECT coalesce(nullif(c.{C.name}, ''), scored.{S.class_id}, '(no class)') AS class,{_QUARTILES}
FROM scored LEFT JOIN {C.TABLE} c ON c.{C.class_id} = scored.{S.class_id}
GROUP BY 1
ORDER BY 1
""",
)

BY_SITE = Query(
    "cohort.BY_SITE",
    f"""
WITH {_SCORED}
SELECT coalesce(nullif(si.{SI.name}, ''), scored.{S.site_id}) AS site,{_QUARTILES}
FROM scored LEFT JOIN {SI.TABLE} si ON si.{SI.site_id} = scored.{S.site_id}
GROUP BY 1
ORDER BY 1
""",
)

BY_EXERCISE = Query(
    "cohort.BY_EXERCISE",
    f"""
WITH {_SCORED}
SELECT coalesce(scored.{S.exercise_id}, '?') AS exercise,{_QUARTILES}
FROM scored
GROUP BY 1
ORDER BY 1
""",
)

PASS_RATE_TREND = Query(
    "cohort.PASS_RATE_TREND",
    f"""
WITH {_SCORED}
SELECT $__timeGroupAlias({S.started_at}, '1d'), {S.exercise_id} AS metric,
       100.0 * avg(CASE WHEN {R.passed} THEN 1 ELSE 0 END) AS pass_rate
FROM scored
GROUP BY 1, 2
ORDER BY 1
""",
    "time_series",
)

FAILING_PARAMS = Query(
    "cohort.FAILING_PARAMS",
    f"""
-- Share of sessions in which a metric scored below the rubric's pass mark.
WITH {_SCORED}
SELECT m.{RM.metric} AS metric,
       100.0 * avg(CASE WHEN m.{RM.score} < rb.{RB.pass_mark} THEN 1 ELSE 0 END) AS failed,
       count(*) AS sessions
FROM {RM.TABLE} m
JOIN scored USING ({RM.session_id}, {RM.rubric_id}, {RM.rubric_version})
JOIN {RB.TABLE} rb ON rb.{RB.rubric_id} = m.{RM.rubric_id} AND rb.{RB.version} = m.{RM.rubric_version}
GROUP BY 1
ORDER BY 2 DESC
LIMIT 15
""",
)

LEVEL_COUNTS = Query(
    "cohort.LEVEL_COUNTS",
    f"""
-- Trainees by the level of their best passed session per exercise (programme statistics).
WITH {_SCORED},
best AS (
  SELECT DISTINCT ON ({S.trainee_id}, {S.exercise_id}) {S.trainee_id}, {S.exercise_id},
         {R.level}
  FROM scored
  WHERE {R.passed} AND {R.level} IS NOT NULL
  ORDER BY {S.trainee_id}, {S.exercise_id}, {R.final_score} DESC
)
SELECT {R.level} AS level, count(*) AS trainees
FROM best
GROUP BY 1
ORDER BY 1
""",
)

RUBRIC_VERSIONS = Query(
    "cohort.RUBRIC_VERSIONS",
    f"""
-- Every rubric version that scored the selected sessions (re-scores included), side by side:
-- mean score, pass rate and the mean change against the version the session ran with.
WITH {_SCORED}
SELECT r.{R.rubric_id} AS rubric, r.{R.rubric_version} AS version, count(*) AS sessions,
       avg(r.{R.final_score}) AS mean_score,
       100.0 * avg(CASE WHEN r.{R.passed} THEN 1 ELSE 0 END) AS pass_rate,
       avg(r.{R.final_score} - scored.{R.final_score}) AS mean_change
FROM {R.TABLE} r JOIN scored USING ({R.session_id})
GROUP BY 1, 2
ORDER BY 1, 2
""",
)
