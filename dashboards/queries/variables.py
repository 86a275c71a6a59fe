"""Dashboard variables: site → class → trainee → exercise → session (each sees the previous)."""

from __future__ import annotations

from dashboards.common import Query
from telemetry.schema import Classes as C
from telemetry.schema import Exercises as E
from telemetry.schema import Rigs as R
from telemetry.schema import ScoreWindowParams as P
from telemetry.schema import Sessions as S
from telemetry.schema import Sites as SI
from telemetry.schema import Trainees as T

SITES = Query(
    "variables.SITES",
    f"""
SELECT {SI.site_id} AS __value, coalesce(nullif({SI.name}, ''), {SI.site_id}) AS __text
FROM {SI.TABLE}
ORDER BY 2
""",
)

CLASSES = Query(
    "variables.CLASSES",
    f"""
SELECT {C.class_id} AS __value, coalesce(nullif({C.name}, ''), {C.class_id}) AS __text
FROM {C.TABLE}
WHERE {C.site_id} IN ($site)
ORDER BY 2
""",
)

TRAINEES = Query(
    "variables.TRAINEES",
    f"""
SELECT {T.trainee_id} AS __value, {T.trainee_id} AS __text
FROM {T.TABLE}
WHERE {T.site_id} IN ($site) AND {T.class_id} IN ($class)
ORDER BY 1
""",
)

EXERCISES = Query(
    "variables.EXERCISES",
    f"""
SELECT {E.exercise_id} AS __value, coalesce(nullif({E.name}, ''), {E.exercise_id}) AS __text
FROM {E.TABLE}
ORDER BY 2
""",
)

SESSIONS = Query(
    "variables.SESSIONS",
    f"""
-- Newest first, so the default selection is the trainee's latest session in the range.
SELECT {S.session_id}::text AS __value,
       to_char({S.started_at} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
         || ' ' || coalesce({S.exercise_id}, '?') || ' (' || {S.state} || ')' AS __text
FROM {S.TABLE}
WHERE {S.site_id} IN ($site) AND {S.trainee_id} = '$trainee'
  AND {S.exercise_id} IN ($exercise)
  AND {S.started_at} IS NOT NULL AND $__timeFilter({S.started_at})
ORDER BY {S.started_at} DESC
""",
)

SESSION_PARAMS = Query(
    "variables.SESSION_PARAMS",
    f"""
SELECT DISTINCT {P.param} AS __value, {P.param} AS __text
FROM {P.TABLE}
WHERE {P.session_id} = nullif('$session', '')::uuid AND $__timeFilter({P.time})
ORDER BY 1
""",
)

LIVE_RIGS = Query(
    "variables.LIVE_RIGS",
    f"""
-- Rigs with a session of the selected classes overlapping the range (one tile each).
SELECT DISTINCT {S.rig_id} AS __value, {S.rig_id} AS __text
FROM {S.TABLE}
WHERE {S.site_id} IN ($site) AND {S.class_id} IN ($class)
  AND {S.started_at} <= $__timeTo()
  AND ({S.ended_at} IS NULL OR {S.ended_at} >= $__timeFrom())
ORDER BY 1
""",
)

SITE_RIGS = Query(
    "variables.SITE_RIGS",
    f"""
SELECT DISTINCT {R.rig_id} AS __value, {R.rig_id} AS __text
FROM {R.TABLE}
WHERE {R.site_id} IN ($site)
ORDER BY 1
""",
)
