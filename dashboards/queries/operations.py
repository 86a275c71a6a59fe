"""Lab operations: rigs online, sample rates, ingest lag, spool, dropped/NACKed frames."""

from __future__ import annotations

from dashboards.common import Query
from telemetry.schema import (
    METRIC_FRAMES_DROPPED,
    METRIC_FRAMES_NACKED,
    METRIC_INGEST_LAG_MS,
    METRIC_RIGS_ONLINE,
    METRIC_SPOOL_BYTES,
    METRIC_SPOOL_RECORDS,
)
from telemetry.schema import OpsMetrics as O
from telemetry.schema import PoseRate1S as PR
from telemetry.schema import Rigs as RG
from telemetry.schema import Sessions as S

STREAMING_WITHIN_S = 3
"""A rig counts as streaming when it stored a frame in the last 3 s (3 missed heartbeats)."""

SUMMARY = Query(
    "operations.SUMMARY",
    f"""
-- Streaming rigs come from stored frames, so this works even when the controller's own
-- metrics are missing; "reported online" is the controller's heartbeat view.
SELECT
  (SELECT count(DISTINCT (s.{S.site_id}, r.{PR.rig_id})) FROM {PR.TABLE} r
    JOIN {S.TABLE} s USING ({PR.session_id})
    WHERE s.{S.site_id} IN ($site) AND r.{PR.rig_id} IN ($rig)
      AND r.{PR.bucket} > $__timeTo()::timestamptz - interval '{STREAMING_WITHIN_S} seconds'
      AND r.{PR.bucket} <= $__timeTo()) AS streaming,
  (SELECT sum(v) FROM (
     SELECT DISTINCT ON (o.{O.site_id}, o.{O.component}) o.{O.value} AS v
     FROM {O.TABLE} o
     WHERE o.{O.name} = '{METRIC_RIGS_ONLINE}' AND o.{O.site_id} IN ($site)
       AND $__timeFilter(o.{O.time})
     ORDER BY o.{O.site_id}, o.{O.component}, o.{O.time} DESC) latest) AS reported_online,
  (SELECT count(*) FROM {RG.TABLE} g
    WHERE g.{RG.site_id} IN ($site) AND g.{RG.rig_id} IN ($rig)) AS rigs
""",
)

RIG_STREAMING = Query(
    "operations.RIG_STREAMING",
    f"""
-- 1 = stored frames in that 10 s slot, 0 = registered session but none (shown red).
SELECT $__timeGroupAlias(r.{PR.bucket}, '10s'), s.{S.site_id} || '/' || r.{PR.rig_id} AS metric,
       CASE WHEN sum(r.{PR.frames}) > 0 THEN 1 ELSE 0 END AS streaming
FROM {PR.TABLE} r JOIN {S.TABLE} s USING ({PR.session_id})
WHERE $__timeFilter(r.{PR.bucket}) AND s.{S.site_id} IN ($site) AND r.{PR.rig_id} IN ($rig)
GROUP BY 1, 2
ORDER BY 1
""",
    "time_series",
)

SAMPLE_RATE = Query(
    "operations.SAMPLE_RATE",
    f"""
-- Stored frames per second, averaged over the seconds that had any.
SELECT $__timeGroupAlias(r.{PR.bucket}, $__interval),
       s.{S.site_id} || '/' || r.{PR.rig_id} AS metric,
       avg(r.{PR.frames}) AS frames_per_s
FROM {PR.TABLE} r JOIN {S.TABLE} s USING ({PR.session_id})
WHERE $__timeFilter(r.{PR.bucket}) AND s.{S.site_id} IN ($site) AND r.{PR.rig_id} IN ($rig)
GROUP BY 1, 2
ORDER BY 1
""",
    "time_series",
)

RIG_TABLE = Query(
    "operations.RIG_TABLE",
    f"""
SELECT g.{RG.site_id} AS site, g.{RG.rig_id} AS rig, g.{RG.sample_rate_hz} AS nominal_hz,
       last.measured_hz, last.last_frame,
       extract(epoch from ($__timeTo()::timestamptz - last.last_frame)) AS since_frame,
       coalesce(cur.{S.state}, '-') AS session_state
FROM {RG.TABLE} g
LEFT JOIN LATERAL (
  SELECT avg(r.{PR.frames}) FILTER (
           WHERE r.{PR.bucket} > $__timeTo()::timestamptz - interval '1 minute') AS measured_hz,
         max(r.{PR.last_time}) AS last_frame
  FROM {PR.TABLE} r JOIN {S.TABLE} s USING ({PR.session_id})
  WHERE r.{PR.rig_id} = g.{RG.rig_id} AND s.{S.site_id} = g.{RG.site_id}
    AND $__timeFilter(r.{PR.bucket})
) last ON true
LEFT JOIN LATERAL (
  SELECT s.{S.state} FROM {S.TABLE} s
  WHERE s.{S.site_id} = g.{RG.site_id} AND s.{S.rig_id} = g.{RG.rig_id}
    AND s.{S.created_at} <= $__timeTo()
  ORDER BY s.{S.created_at} DESC LIMIT 1
) cur ON true
WHERE g.{RG.site_id} IN ($site) AND g.{RG.rig_id} IN ($rig)
ORDER BY 1, 2
""",
)


def _gauge(name: str, metric_name: str, column: str) -> Query:
    """A gauge from ops_metrics, one series per component (and rig, where set)."""
    return Query(
        name,
        f"""
SELECT $__timeGroupAlias(o.{O.time}, $__interval),
       o.{O.component} || CASE WHEN o.{O.rig_id} <> '' THEN ' ' || o.{O.rig_id} ELSE '' END
         AS metric,
       max(o.{O.value}) AS {column}
FROM {O.TABLE} o
WHERE o.{O.name} = '{metric_name}' AND o.{O.site_id} IN ($site) AND $__timeFilter(o.{O.time})
GROUP BY 1, 2
ORDER BY 1
""",
        "time_series",
    )


INGEST_LAG = _gauge("operations.INGEST_LAG", METRIC_INGEST_LAG_MS, "lag_ms")
SPOOL_BYTES = _gauge("operations.SPOOL_BYTES", METRIC_SPOOL_BYTES, "spool_bytes")
SPOOL_RECORDS = _gauge("operations.SPOOL_RECORDS", METRIC_SPOOL_RECORDS, "spool_records")

# Counters are cumulative per (site, component, rig, label) and reset to 0 on restart: the
# increase between two samples is the difference, or the new value after a reset.
DROPPED_BY_KIND = Query(
    "operations.DROPPED_BY_KIND",
    f"""
-- Increase of the dropped/NACKed frame counters over the range, by kind.
WITH samples AS (
  SELECT o.{O.name}, o.{O.label}, o.{O.value},
         lag(o.{O.value}) OVER (
           PARTITION BY o.{O.site_id}, o.{O.component}, o.{O.rig_id}, o.{O.name}, o.{O.label}
           ORDER BY o.{O.time}) AS prev
  FROM {O.TABLE} o
  WHERE o.{O.name} IN ('{METRIC_FRAMES_DROPPED}', '{METRIC_FRAMES_NACKED}')
    AND o.{O.site_id} IN ($site) AND $__timeFilter(o.{O.time})
)
SELECT coalesce(nullif({O.label}, ''), '(none)') AS kind,
       sum(CASE WHEN prev IS NULL THEN 0 WHEN {O.value} >= prev THEN {O.value} - prev
                ELSE {O.value} END) FILTER (WHERE {O.name} = '{METRIC_FRAMES_DROPPED}') AS dropped,
       sum(CASE WHEN prev IS NULL THEN 0 WHEN {O.value} >= prev THEN {O.value} - prev
                ELSE {O.value} END) FILTER (WHERE {O.name} = '{METRIC_FRAMES_NACKED}') AS nacked
FROM samples
GROUP BY 1
ORDER BY 1
""",
)

DROPPED_RATE = Query(
    "operations.DROPPED_RATE",
    f"""
WITH samples AS (
  SELECT o.{O.time}, o.{O.name}, o.{O.label}, o.{O.value},
         lag(o.{O.value}) OVER (
           PARTITION BY o.{O.site_id}, o.{O.component}, o.{O.rig_id}, o.{O.name}, o.{O.label}
           ORDER BY o.{O.time}) AS prev
  FROM {O.TABLE} o
  WHERE o.{O.name} IN ('{METRIC_FRAMES_DROPPED}', '{METRIC_FRAMES_NACKED}')
    AND o.{O.site_id} IN ($site) AND $__timeFilter(o.{O.time})
)
SELECT $__timeGroupAlias({O.time}, $__interval),
       {O.name} || CASE WHEN {O.label} <> '' THEN ' ' || {O.label} ELSE '' END AS metric,
       sum(CASE WHEN prev IS NULL THEN 0 WHEN {O.value} >= prev THEN {O.value} - prev
                ELSE {O.value} END) AS frames
FROM samples
GROUP BY 1, 2
ORDER BY 1
""",
    "time_series",
)

SESSION_LOSS = Query(
    "operations.SESSION_LOSS",
    f"""
-- Per session in the range: what the rig should have sent, what arrived, what was repaired.
SELECT s.{S.started_at} AS "time", s.{S.rig_id} AS rig, s.{S.session_id}::text AS session,
       s.{S.state} AS state, s.{S.frames_expected} AS expected,
       s.{S.frames_expected} - s.{S.frames_received} AS missing,
       s.{S.frames_interpolated} AS interpolated, s.{S.frames_duplicate} AS duplicates,
       s.{S.frames_nacked} AS nacked, s.{S.gap_count} AS gaps,
       s.{S.clock_offset_ms} AS clock_offset_ms
FROM {S.TABLE} s
WHERE s.{S.site_id} IN ($site) AND s.{S.rig_id} IN ($rig) AND $__timeFilter(s.{S.started_at})
ORDER BY 1 DESC
LIMIT 100
""",
)
