"""The dashboard variables every board shares, built once in the house style."""

from __future__ import annotations

from dashboards.common import Json, query_variable
from dashboards.queries import variables as q


def site() -> Json:
    return query_variable("site", "Site", q.SITES, multi=True, include_all=True,
                          description="School / lab / competition hall")


def klass() -> Json:
    return query_variable("class", "Class", q.CLASSES, multi=True, include_all=True)


def trainee() -> Json:
    return query_variable("trainee", "Trainee", q.TRAINEES,
                          description="Pseudonymous trainee id (real names are not readable here)")


def exercise() -> Json:
    return query_variable("exercise", "Exercise", q.EXERCISES, multi=True, include_all=True)


def session() -> Json:
    return query_variable("session", "Session", q.SESSIONS,
                          description="Sessions of the trainee in the time range, newest first")


def session_param() -> Json:
    return query_variable("param", "Parameter", q.SESSION_PARAMS, multi=True, include_all=True)


def live_rig() -> Json:
    return query_variable("rig", "Rig", q.LIVE_RIGS, multi=True, include_all=True)


def site_rig() -> Json:
    return query_variable("rig", "Rig", q.SITE_RIGS, multi=True, include_all=True)
