"""Exports: a session at full rate (poses, score windows, cues, events, result) as CSV or Parquet,
and a trainee's training record (JSON or CSV).

Pose files have one row per frame: ``time`` (UTC, µs), ``rig_time``, ``seq``, ``valid_mask``, then
``t<i>_<px|py|pz|qx|qy|qz|qw>`` per tracker and ``a<j>`` per analog channel. CSV floats are
written in their shortest exact form (PostgreSQL's own text output for float4/float8 since
PostgreSQL 12, and numpy's for Parquet's source arrays), so a re-read value is bit-identical.
"""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from telemetry import queries
from telemetry.schema import POSE_COMPONENTS

FORMATS = ("csv", "parquet")


class ExportError(RuntimeError):
    """An export could not be made (unknown session, missing optional dependency...)."""


@dataclass(frozen=True)
class ExportedFile:
    """One file written and how many data rows it holds."""

    path: Path
    rows: int


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ExportError(
            "Parquet export needs pyarrow: install the optional extra, "
            "pip install 'vr-lab-controller[parquet]' (or use --format csv)"
        ) from exc
    return pa, pq


def pose_column_names(trackers: int, analog: int) -> list[str]:
    """Column names of a session's pose file."""
    names = ["time", "rig_time", "seq", "valid_mask"]
    names += [f"t{i}_{c}" for i in range(trackers) for c in POSE_COMPONENTS]
    names += [f"a{j}" for j in range(analog)]
    return names


def _copy_csv(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...], path: Path) -> int:
    with path.open("wb") as f, conn.cursor() as cur:
        with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT CSV, HEADER)", params) as copy:
            for chunk in copy:
                f.write(chunk)
        return max(cur.rowcount, 0)  # the server's "COPY n" (quoted fields may hold newlines)


_TABLE_QUERIES = {
    "scores": (
        "SELECT w.time, w.window_idx, w.seq_hi, w.progress, w.alignment_distance, w.window_score "
        "FROM score_windows w WHERE w.session_id = %s ORDER BY w.window_idx"
    ),
    "params": (
        "SELECT time, window_idx, param, mean, std, frac_in_window, ideal, lo, hi "
        "FROM score_window_params WHERE session_id = %s ORDER BY window_idx, param"
    ),
    "cues": (
        "SELECT time, rig_id, param, kind, severity, value, message FROM cues "
        "WHERE session_id = %s ORDER BY time, param, kind"
    ),
    "events": (
        "SELECT time, rig_id, kind, detail FROM session_events WHERE session_id = %s ORDER BY time, kind"
    ),
}


def export_session(dsn: str, session_id: uuid.UUID, out_dir: Path, fmt: str = "csv") -> list[ExportedFile]:
    """Write ``session-<id>-{poses,scores,params,cues,events}.<fmt>`` and ``-result.json``."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    pa_pq: Any = _pyarrow() if fmt == "parquet" else None
    summary = queries.session_summary(dsn, session_id)
    frames = queries.session_frames(dsn, session_id)
    if summary is None and frames is None:
        raise ExportError(f"no session {session_id} in the database")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"session-{session_id}"
    out: list[ExportedFile] = []
    path = out_dir / f"{stem}-poses.{fmt}"
    if frames is None:
        trackers, analog = 0, 0
    else:
        trackers, analog = frames.poses.shape[1], frames.analog.shape[1]
    if fmt == "csv":
        sel = ["time", "rig_time", "seq", "valid_mask"]
        sel += [
            f"poses[{i + 1}][{k + 1}] AS t{i}_{c}"
            for i in range(trackers)
            for k, c in enumerate(POSE_COMPONENTS)
        ]
        sel += [f"analog[{j + 1}] AS a{j}" for j in range(analog)]
        with psycopg.connect(dsn) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            n = _copy_csv(
                conn,
                f"SELECT {', '.join(sel)} FROM pose_frames WHERE session_id = %s ORDER BY seq",
                (session_id,),
                path,
            )
            out.append(ExportedFile(path, n))
            for name, query in _TABLE_QUERIES.items():
                p = out_dir / f"{stem}-{name}.csv"
                out.append(ExportedFile(p, _copy_csv(conn, query, (session_id,), p)))
    else:
        pa, pq = pa_pq
        cols: dict[str, Any] = {}
        if frames is not None:
            cols["time"] = pa.array(frames.time_us, type=pa.timestamp("us", tz="UTC"))
            cols["rig_time"] = pa.array(frames.rig_time)
            cols["seq"] = pa.array(frames.seq)
            cols["valid_mask"] = pa.array(frames.valid_mask)
            for i in range(trackers):
                for k, c in enumerate(POSE_COMPONENTS):
                    cols[f"t{i}_{c}"] = pa.array(np.ascontiguousarray(frames.poses[:, i, k]))
            for j in range(analog):
                cols[f"a{j}"] = pa.array(np.ascontiguousarray(frames.analog[:, j]))
        table = pa.table(cols)
        table = table.replace_schema_metadata(
            {"session_id": str(session_id), "rig_id": frames.rig_id if frames else ""}
        )
        pq.write_table(table, path)
        out.append(ExportedFile(path, table.num_rows))
        with psycopg.connect(dsn) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            for name, query in _TABLE_QUERIES.items():
                with conn.cursor() as cur:
                    cur.execute(query.encode(), (session_id,))
                    names = [d.name for d in cur.description or []]
                    data = cur.fetchall()
                cols = {
                    nm: [json.dumps(r[i]) if isinstance(r[i], dict) else r[i] for r in data]
                    for i, nm in enumerate(names)
                }
                p = out_dir / f"{stem}-{name}.parquet"
                pq.write_table(pa.table(cols), p)
                out.append(ExportedFile(p, len(data)))
    result_path = out_dir / f"{stem}-result.json"
    result_path.write_text(
        json.dumps(asdict(summary) if summary else {}, indent=2, sort_keys=True, default=str),
        encoding="utf-8",
    )
    out.append(ExportedFile(result_path, 1 if summary else 0))
    return out


def trainee_record(dsn: str, trainee_id: str, *, with_identity: bool = False) -> dict[str, Any]:
    """A trainee's training record: every session with rubric version, score, level, breakdown."""
    history = queries.trainee_history(dsn, trainee_id)
    record: dict[str, Any] = {"trainee_id": trainee_id, "sessions": []}
    with psycopg.connect(dsn) as conn:
        t = conn.execute(
            "SELECT site_id, class_id FROM trainees WHERE trainee_id = %s", (trainee_id,)
        ).fetchone()
        if t is None and not history:
            raise ExportError(f"no trainee {trainee_id!r} in the database")
        if t is not None:
            record["site_id"], record["class_id"] = t
        if with_identity:
            ident = conn.execute(
                "SELECT real_name, national_id FROM trainee_identities WHERE trainee_id = %s",
                (trainee_id,),
            ).fetchone()
            record["real_name"], record["national_id"] = ident if ident else (None, None)
        for h in history:
            metrics = conn.execute(
                "SELECT metric, value, score, time_in_window FROM result_metrics "
                "WHERE session_id = %s AND rubric_id = %s AND rubric_version = %s ORDER BY metric",
                (h.session_id, h.rubric_id, h.rubric_version),
            ).fetchall()
            entry = asdict(h)
            entry["metrics"] = [
                {"metric": m[0], "value": m[1], "score": m[2], "time_in_window": m[3]} for m in metrics
            ]
            record["sessions"].append(entry)
    levels = [s["level"] for s in record["sessions"] if s["level"]]
    record["latest_level"] = levels[-1] if levels else None
    return record


def export_trainee(
    dsn: str, trainee_id: str, path: Path, fmt: str = "json", *, with_identity: bool = False
) -> ExportedFile:
    """Write the training record as JSON (nested) or CSV (one row per session)."""
    record = trainee_record(dsn, trainee_id, with_identity=with_identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str, ensure_ascii=False))
    elif fmt == "csv":
        fields = [
            "session_id", "exercise_id", "state", "started_at", "ended_at", "rubric_id",
            "rubric_version", "final_score", "passed", "level", "weakest_parameter",
        ]  # fmt: skip
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["trainee_id", *fields])
            for s in record["sessions"]:
                w.writerow([trainee_id, *(s[k] for k in fields)])
    else:
        raise ExportError(f"unknown trainee export format {fmt!r}; choose json or csv")
    return ExportedFile(path, len(record["sessions"]))
