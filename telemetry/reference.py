"""Reference data: sites, rigs, classes, trainees (and their separately kept identities),
exercises and versioned rubrics. Low rate, synchronous, idempotent upserts."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def upsert_site(dsn: str, site_id: str, name: str = "", timezone: str = "UTC") -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO sites (site_id, name, timezone) VALUES (%s, %s, %s) "
            "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone",
            (site_id, name, timezone),
        )


def upsert_rig(
    dsn: str,
    site_id: str,
    rig_id: str,
    *,
    name: str = "",
    n_trackers: int = 6,
    analog_channels: tuple[str, ...] = (),
    sample_rate_hz: float = 120.0,
) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO rigs (site_id, rig_id, name, n_trackers, analog_channels, sample_rate_hz) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (site_id, rig_id) DO UPDATE SET "
            "name = EXCLUDED.name, n_trackers = EXCLUDED.n_trackers, "
            "analog_channels = EXCLUDED.analog_channels, sample_rate_hz = EXCLUDED.sample_rate_hz",
            (site_id, rig_id, name, n_trackers, list(analog_channels), sample_rate_hz),
        )


def upsert_class(dsn: str, class_id: str, site_id: str, name: str = "", instructor: str = "") -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO classes (class_id, site_id, name, instructor) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (class_id) DO UPDATE SET site_id = EXCLUDED.site_id, name = EXCLUDED.name, "
            "instructor = EXCLUDED.instructor",
            (class_id, site_id, name, instructor),
        )


def upsert_trainee(
    dsn: str,
    trainee_id: str,
    site_id: str,
    class_id: str | None = None,
    *,
    real_name: str | None = None,
    national_id: str | None = None,
) -> None:
    """The pseudonymous trainee, and the identity (separate table) when a real name is given."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO trainees (trainee_id, site_id, class_id) VALUES (%s, %s, %s) "
            "ON CONFLICT (trainee_id) DO UPDATE SET site_id = EXCLUDED.site_id, "
            "class_id = EXCLUDED.class_id",
            (trainee_id, site_id, class_id),
        )
        if real_name is not None:
            conn.execute(
                "INSERT INTO trainee_identities (trainee_id, real_name, national_id) "
                "VALUES (%s, %s, %s) ON CONFLICT (trainee_id) DO UPDATE SET "
                "real_name = EXCLUDED.real_name, national_id = EXCLUDED.national_id",
                (trainee_id, real_name, national_id),
            )


def upsert_exercise(
    dsn: str,
    exercise_id: str,
    *,
    family: str = "",
    name: str = "",
    description: str = "",
    geometry: dict[str, Any] | None = None,
) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO exercises (exercise_id, family, name, description, geometry) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (exercise_id) DO UPDATE SET "
            "family = EXCLUDED.family, name = EXCLUDED.name, description = EXCLUDED.description, "
            "geometry = EXCLUDED.geometry",
            (exercise_id, family, name, description, Jsonb(geometry or {})),
        )


class RubricVersionError(ValueError):
    """A rubric version was stored already with different content (versions are immutable)."""


def add_rubric(
    dsn: str, rubric_id: str, version: int, exercise_id: str, rubric: dict[str, Any], pass_mark: float = 60
) -> bool:
    """Store a rubric version; True if new. The same version with other content is an error."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT rubric, pass_mark FROM rubrics WHERE rubric_id = %s AND version = %s",
            (rubric_id, version),
        ).fetchone()
        if row is not None:
            if row[0] != rubric or float(row[1]) != float(pass_mark):
                raise RubricVersionError(
                    f"rubric {rubric_id} v{version} exists with other content; add a new version"
                )
            return False
        conn.execute(
            "INSERT INTO rubrics (rubric_id, version, exercise_id, rubric, pass_mark) "
            "VALUES (%s, %s, %s, %s, %s)",
            (rubric_id, version, exercise_id, Jsonb(rubric), pass_mark),
        )
        return True
