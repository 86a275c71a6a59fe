"""Session review: parameters against their bands, cues, alignment, score breakdown, data quality."""

from __future__ import annotations

from dashboards.common import Query
from telemetry.schema import Cues as CU
from telemetry.schema import PoseRate1S as PR
from telemetry.schema import ResultMetrics as RM
from telemetry.schema import Results as R
from telemetry.schema import ScoreWindowParams as P
from telemetry.schema import ScoreWindows as W
from telemetry.schema import SessionEvents as EV
from telemetry.schema import Sessions as S

# The result scored with the rubric version the session ran with (re-scores are compared on
# the cohort dashboard); if that one is missing, the newest result.
_RESULT = f"""
res AS (
  SELECT r.* FROM {R.TABLE} r JOIN {S.TABLE} s USING ({R.session_id})
  WHERE r.{R.session_id} = nullif('$session', '')::uuid
  ORDER BY (r.{R.rubric_id} = s.{S.rubric_id} AND r.{R.rubric_version} = s.{S.rubric_version})
           DESC, r.{R.scored_at} DESC
  LIMIT 1
)"""

SUMMARY = Query(
    "session.SUMMARY",
    f"""
WITH {_RESULT}
SELECT res.{R.final_score} AS final_score,
       CASE WHEN res.{R.passed} THEN 1 ELSE 0 END AS passed,
       coalesce(res.{R.level}, '-') AS level,
       coalesce(res.{R.weakest_parameter}, '-') AS weakest,
       res.{R.alignment_distance} AS alignment_distance,
       extract(epoch from (s.{S.ended_at} - s.{S.started_at})) AS duration,
       res.{R.rubric_id} || ' v' || res.{R.rubric_version} AS rubric
FROM {S.TABLE} s LEFT JOIN res USING ({S.session_id})
WHERE s.{S.session_id} = nullif('$session', '')::uuid
""",
)

PARAM_BAND = Query(
    "session.PARAM_BAND",
    f"""
-- One parameter (the panel repeats per $param) with its tolerance band as scored.
SELECT p.{P.time} AS "time", p.{P.mean} AS "value", p.{P.lo} AS lo, p.{P.hi} AS hi,
       p.{P.ideal} AS ideal
FROM {P.TABLE} p
WHERE p.{P.session_id} = nullif('$session', '')::uuid AND p.{P.param} IN ($param)
  AND $__timeFilter(p.{P.time})
ORDER BY 1
""",
)

IN_WINDOW = Query(
    "session.IN_WINDOW",
    f"""
SELECT p.{P.time} AS "time", p.{P.param} AS metric, 100 * p.{P.frac_in_window} AS in_window
FROM {P.TABLE} p
WHERE p.{P.session_id} = nullif('$session', '')::uuid AND p.{P.param} IN ($param)
  AND $__timeFilter(p.{P.time})
ORDER BY 1
""",
    "time_series",
)

ALIGNMENT = Query(
    "session.ALIGNMENT",
    f"""
SELECT w.{W.time} AS "time", w.{W.alignment_distance} AS alignment_distance,
       100 * w.{W.progress} AS progress, w.{W.window_score} AS window_score
FROM {W.TABLE} w
WHERE w.{W.session_id} = nullif('$session', '')::uuid AND $__timeFilter(w.{W.time})
ORDER BY 1
""",
)

SCORE_BREAKDOWN = Query(
    "session.SCORE_BREAKDOWN",
    f"""
WITH {_RESULT}
SELECT m.{RM.metric} AS metric, m.{RM.score} AS score,
       100 * m.{RM.weight} / nullif(sum(m.{RM.weight}) OVER (), 0) AS weight
FROM {RM.TABLE} m JOIN res USING ({RM.session_id}, {RM.rubric_id}, {RM.rubric_version})
ORDER BY m.{RM.score}
""",
)

METRICS_TABLE = Query(
    "session.METRICS_TABLE",
    f"""
WITH {_RESULT}
SELECT m.{RM.metric} AS metric, m.{RM.value} AS "value", m.{RM.ideal} AS ideal,
       m.{RM.lo} AS lo, m.{RM.hi} AS hi, 100 * m.{RM.time_in_window} AS in_window,
       m.{RM.weight} AS weight, m.{RM.score} AS score
FROM {RM.TABLE} m JOIN res USING ({RM.session_id}, {RM.rubric_id}, {RM.rubric_version})
ORDER BY m.{RM.metric}
""",
)

DATA_QUALITY = Query(
    "session.DATA_QUALITY",
    f"""
SELECT s.{S.gap_count} AS gaps,
       100.0 * s.{S.frames_interpolated} / nullif(s.{S.frames_received}, 0) AS interpolated,
       100.0 * (s.{S.frames_expected} - s.{S.frames_received})
         / nullif(s.{S.frames_expected}, 0) AS missing,
       s.{S.frames_duplicate} AS duplicates,
       s.{S.frames_nacked} AS nacked,
       s.{S.clock_offset_ms} AS clock_offset,
       s.{S.clock_rtt_ms} AS clock_rtt
FROM {S.TABLE} s
WHERE s.{S.session_id} = nullif('$session', '')::uuid
""",
)

FRAME_RATE = Query(
    "session.FRAME_RATE",
    f"""
-- Stored frames per second: dips are gaps, a flat zero is a lost rig.
SELECT r.{PR.bucket} AS "time", r.{PR.frames} AS frames, r.{PR.valid_frames} AS valid_frames
FROM {PR.TABLE} r
WHERE r.{PR.session_id} = nullif('$session', '')::uuid AND $__timeFilter(r.{PR.bucket})
ORDER BY 1
""",
)

CUE_ANNOTATIONS = Query(
    "session.CUE_ANNOTATIONS",
    f"""
SELECT c.{CU.time} AS "time",
       c.{CU.param} || ' ' || c.{CU.kind}
         || CASE WHEN c.{CU.message} <> '' THEN ': ' || c.{CU.message} ELSE '' END AS text,
       concat_ws(',', nullif(c.{CU.param}, ''), c.{CU.kind}) AS tags
FROM {CU.TABLE} c
WHERE c.{CU.session_id} = nullif('$session', '')::uuid AND $__timeFilter(c.{CU.time})
ORDER BY 1
""",
)

EVENTS = Query(
    "session.EVENTS",
    f"""
SELECT e.{EV.time} AS "time", e.{EV.kind} AS kind, e.{EV.detail}::text AS detail
FROM {EV.TABLE} e
WHERE e.{EV.session_id} = nullif('$session', '')::uuid AND $__timeFilter(e.{EV.time})
ORDER BY 1
""",
)

EVENT_ANNOTATIONS = Query(
    "session.EVENT_ANNOTATIONS",
    f"""
SELECT e.{EV.time} AS "time", e.{EV.kind} AS text, 'event' AS tags
FROM {EV.TABLE} e
WHERE e.{EV.session_id} = nullif('$session', '')::uuid AND $__timeFilter(e.{EV.time})
ORDER BY 1
""",
)
