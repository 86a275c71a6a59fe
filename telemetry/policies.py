"""Retention, compression and rollups, for both TimescaleDB editions.

``retention_settings`` (one row per hypertable) says how long raw data is kept and when chunks
are compressed. What happens depends on ``timescaledb.license``:

- ``timescale`` (Community edition): background jobs do the work — ``add_retention_policy``,
  columnstore compression with ``add_compression_policy``, and the per-minute frame-rate rollup
  ``pose_rate_1m`` becomes a continuous aggregate with a refresh policy
  (:func:`licensed_statements` generates the SQL; :func:`apply_policies` runs it).
- ``apache`` (what Debian ships): no background policies, compression or continuous aggregates.
  Retention is :func:`drop_old_chunks` (``drop_chunks``, Apache-licensed), run by
  ``labctl db retention apply`` from a timer; the rollups are ``pose_rate_1s``, maintained by the
  writer in the same transaction as the frames, and the plain view ``pose_rate_1m`` over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from telemetry import schema

LICENSED = "timescale"

# Columnstore layout per hypertable: segment by the column queries filter on, order by time, so
# a session's rows compress together (typ. 10-20x for float arrays that change slowly).
_SEGMENT_BY: dict[str, str] = {
    "pose_frames": "session_id",
    "pose_rate_1s": "session_id",
    "score_windows": "session_id",
    "score_window_params": "session_id, param",
    "cues": "session_id",
    "session_events": "session_id",
    "ops_metrics": "name, site_id",
}
_TIME_COLUMN: dict[str, str] = {"pose_rate_1s": "bucket"}

POSE_RATE_1M_CAGG = """
CREATE MATERIALIZED VIEW pose_rate_1m WITH (timescaledb.continuous) AS
SELECT time_bucket(interval '1 minute', bucket) AS bucket, session_id, rig_id,
       sum(frames)::bigint AS frames, sum(valid_frames)::bigint AS valid_frames,
       max(last_seq) AS last_seq, max(last_time) AS last_time
FROM pose_rate_1s
GROUP BY 1, 2, 3
WITH NO DATA
""".strip()


@dataclass(frozen=True)
class RetentionRule:
    """One row of retention_settings."""

    hypertable: str
    keep: timedelta | None
    compress_after: timedelta | None


def license_of(dsn: str) -> str:
    """``timescaledb.license`` of the database (``apache`` or ``timescale``)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW timescaledb.license").fetchone()
    return str(row[0]) if row else "apache"


def rules(dsn: str) -> list[RetentionRule]:
    """The configured retention/compression per hypertable."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT hypertable, keep, compress_after FROM retention_settings ORDER BY hypertable"
        ).fetchall()
    return [RetentionRule(str(h), k, c) for h, k, c in rows]


_HYPERTABLE_NAMES = frozenset(t.TABLE for t in schema.HYPERTABLES)


def set_rule(
    dsn: str,
    hypertable: str,
    *,
    keep: timedelta | str | None = "unchanged",
    compress_after: timedelta | str | None = "unchanged",
) -> RetentionRule:
    """Change one hypertable's rule (``None`` = keep forever / never compress)."""
    if hypertable not in _HYPERTABLE_NAMES:
        raise ValueError(f"{hypertable!r} is not a telemetry hypertable ({sorted(_HYPERTABLE_NAMES)})")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO retention_settings (hypertable) VALUES (%s) ON CONFLICT DO NOTHING",
            (hypertable,),
        )
        if keep != "unchanged":
            conn.execute("UPDATE retention_settings SET keep = %s WHERE hypertable = %s", (keep, hypertable))
        if compress_after != "unchanged":
            conn.execute(
                "UPDATE retention_settings SET compress_after = %s WHERE hypertable = %s",
                (compress_after, hypertable),
            )
        row = conn.execute(
            "SELECT hypertable, keep, compress_after FROM retention_settings WHERE hypertable = %s",
            (hypertable,),
        ).fetchone()
    assert row is not None
    return RetentionRule(str(row[0]), row[1], row[2])


def _interval_literal(td: timedelta) -> str:
    return f"{int(td.total_seconds())} seconds"


def licensed_statements(rule_list: list[RetentionRule]) -> list[str]:
    """The SQL that sets up policies, compression and the continuous aggregate (licensed edition).

    Idempotent (``if_not_exists``; the rollup view is replaced only while it is a plain view).
    """
    out: list[str] = []
    for r in rule_list:
        t = sql.Identifier(r.hypertable).as_string(None)
        if r.keep is not None:
            out.append(
                f"SELECT add_retention_policy('{r.hypertable}', "
                f"drop_after => interval '{_interval_literal(r.keep)}', if_not_exists => true)"
            )
        if r.compress_after is not None:
            time_col = _TIME_COLUMN.get(r.hypertable, "time")
            out.append(
                f"ALTER TABLE {t} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{_SEGMENT_BY[r.hypertable]}', "
                f"timescaledb.compress_orderby = '{time_col} DESC')"
            )
            out.append(
                f"SELECT add_compression_policy('{r.hypertable}', "
                f"compress_after => interval '{_interval_literal(r.compress_after)}', "
                "if_not_exists => true)"
            )
    out.append(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_views WHERE viewname = 'pose_rate_1m' "
        "AND schemaname = 'public') THEN EXECUTE 'DROP VIEW pose_rate_1m'; "
        f"EXECUTE $q${POSE_RATE_1M_CAGG}$q$; END IF; END $$"
    )
    out.append(
        "SELECT add_continuous_aggregate_policy('pose_rate_1m', start_offset => interval '2 hours', "
        "end_offset => interval '1 minute', schedule_interval => interval '1 minute', "
        "if_not_exists => true)"
    )
    return out


def apply_policies(dsn: str) -> list[str]:
    """Install the background policies where licensed; returns the statements run (none on
    Apache, where :func:`drop_old_chunks` is the retention path)."""
    if license_of(dsn) != LICENSED:
        return []
    stmts = licensed_statements(rules(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in stmts:
            conn.execute(s.encode())
    return stmts


@dataclass(frozen=True)
class DroppedChunks:
    """Chunks dropped (or that would be, on a dry run) for one hypertable."""

    hypertable: str
    older_than: datetime
    chunks: tuple[str, ...]


def drop_old_chunks(dsn: str, *, now: datetime | None = None, dry_run: bool = False) -> list[DroppedChunks]:
    """Apply retention with ``drop_chunks`` (works on every edition): for each hypertable with a
    ``keep`` interval, drop the chunks whose every row is older than ``now - keep``."""
    out: list[DroppedChunks] = []
    with psycopg.connect(dsn) as conn:
        current: datetime = now or conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        for r in rules(dsn):
            if r.keep is None:
                continue
            cutoff = current - r.keep
            fn = "show_chunks" if dry_run else "drop_chunks"
            rows: list[Any] = conn.execute(
                sql.SQL("SELECT {}({}::regclass, older_than => %s)::text").format(
                    sql.Identifier(fn), sql.Literal(r.hypertable)
                ),
                (cutoff,),
            ).fetchall()
            out.append(DroppedChunks(r.hypertable, cutoff, tuple(str(x[0]) for x in rows)))
        conn.commit()
    return out
