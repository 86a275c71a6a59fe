"""Cohort and research: classes, schools and exercises compared; rubric versions side by side."""

from __future__ import annotations

from dashboards import variables as v
from dashboards.common import (
    GREEN,
    RED,
    YELLOW,
    Json,
    barchart,
    dashboard,
    histogram,
    override,
    piechart,
    stat,
    table,
    thresholds,
    timeseries,
)
from dashboards.queries import cohort as q

UID = "vr-lab-cohort"

SCORE = thresholds((None, RED), (60, YELLOW), (80, GREEN))  # domain notes: 60 pass, 80 good
QUARTILE_OVERRIDES = [override("pass_rate", unit="percent", decimals=0),
                      override("sessions", **{"custom.hideFrom": {"viz": True, "legend": True,
                                                                  "tooltip": False}})]


def build() -> Json:
    panels = [
        stat("Cohort", q.SUMMARY, width=24, height=4, color_mode="value",
             description="Sessions, trainees, pass rate and median score in the selection.",
             overrides=[override("pass_rate", unit="percent", decimals=0),
                        override("median_score", thresholds=SCORE, decimals=0)]),
        histogram("Score distribution", q.SCORE_DISTRIBUTION, bucket_size=5,
                  description="Final scores (rubric version each session ran with), 5-point bins."),
        barchart("Scores by class", q.BY_CLASS, x_field="class", maximum=100,
                 overrides=QUARTILE_OVERRIDES,
                 description="Quartiles of the final score and pass rate per class."),
        barchart("Scores by school", q.BY_SITE, x_field="site", maximum=100,
                 overrides=QUARTILE_OVERRIDES,
                 description="Quartiles of the final score and pass rate per site."),
        barchart("Scores by exercise", q.BY_EXERCISE, x_field="exercise", maximum=100,
                 overrides=QUARTILE_OVERRIDES,
                 description="Quartiles of the final score and pass rate per exercise."),
        timeseries("Pass rate per day", q.PASS_RATE_TREND, unit="percent", draw="points",
                   minimum=0, maximum=100, description="Per exercise."),
        barchart("Parameters that fail most", q.FAILING_PARAMS, x_field="metric",
                 horizontal=True, unit="percent", maximum=100,
                 overrides=[override("sessions", **{"custom.hideFrom": {
                     "viz": True, "legend": True, "tooltip": False}})],
                 description="Share of sessions in which the metric scored below the rubric's "
                             "pass mark."),
        piechart("Skill levels reached", q.LEVEL_COUNTS, width=12,
                 description="Trainees by the level of their best passed session per exercise "
                             "(for the programme's statistics)."),
        table("Rubric versions", q.RUBRIC_VERSIONS, width=24,
              description="Every rubric version that scored these sessions (re-scores "
                          "included): mean score, pass rate, mean change against the version "
                          "the session ran with.",
              overrides=[override("pass_rate", unit="percent", decimals=0),
                         override("mean_score", decimals=1),
                         override("mean_change", decimals=1)]),
    ]
    return dashboard(
        UID, "Cohort and research",
        description="Score distributions by class, school and exercise; pass rates; failing "
                    "parameters; skill-level counts; rubric-version comparisons.",
        panels=panels,
        variables=[v.site(), v.klass(), v.exercise()],
        time_from="now-180d", tags=("research",),
    )
