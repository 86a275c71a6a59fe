"""Trainee progress: how one trainee develops across sessions and exercises."""

from __future__ import annotations

from dashboards import variables as v
from dashboards.boards.session_review import UID as SESSION_REVIEW_UID
from dashboards.common import (
    GREEN,
    RED,
    YELLOW,
    Json,
    barchart,
    dashboard,
    override,
    stat,
    table,
    thresholds,
    timeseries,
)
from dashboards.queries import trainee as q

UID = "vr-lab-trainee-progress"

SCORE = thresholds((None, RED), (60, YELLOW), (80, GREEN))  # domain notes: 60 pass, 80 good


def build() -> Json:
    session_link = {
        "title": "Review this session",
        "url": f"/d/{SESSION_REVIEW_UID}?var-trainee=${{trainee}}"
               "&var-session=${__data.fields.session}&${__url_time_range}",
    }
    panels = [
        stat("Summary", q.SUMMARY, width=24, height=4, color_mode="value",
             description="Sessions, pass rate, best score and practice time in the range.",
             overrides=[override("pass_rate", unit="percent", decimals=0),
                        override("best_score", thresholds=SCORE, decimals=0),
                        override("practice_time", unit="s")]),
        timeseries("Score trend", q.SCORE_TREND, draw="points", minimum=0, maximum=100,
                   steps=SCORE, threshold_style="line",
                   description="Final score of each session, per exercise; line at 60 = pass."),
        timeseries("Sessions per day", q.SESSIONS_PER_DAY, draw="bars",
                   description="Practice volume per exercise."),
        table("Level reached", q.LEVELS,
              description="Per exercise: sessions, passes, best and latest score, level of the "
                          "best passed session.",
              overrides=[override("best_score", thresholds=SCORE, decimals=0,
                                  **{"custom.cellOptions": {"type": "color-background"}})]),
        barchart("Weakest parameters", q.WEAKEST_PARAMS, x_field="metric", horizontal=True,
                 maximum=100, overrides=[override("mean_score", thresholds=SCORE)],
                 description="Lowest mean metric score first: what to practise next."),
        table("Sessions", q.SESSIONS, width=24, height=9,
              description="Every scored session; click a session id to review it.",
              overrides=[override("score", thresholds=SCORE, decimals=0,
                                  **{"custom.cellOptions": {"type": "color-background"}}),
                         override("duration", unit="s"),
                         override("session", links=[session_link])]),
    ]
    return dashboard(
        UID, "Trainee progress",
        description="Sessions over time per exercise, score trend, level reached, weakest "
                    "parameters of one trainee.",
        panels=panels,
        variables=[v.site(), v.klass(), v.trainee(), v.exercise()],
        time_from="now-90d", tags=("review",),
    )
