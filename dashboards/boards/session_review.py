"""Session review: one session, parameter by parameter, with its cues and data quality."""

from __future__ import annotations

from dashboards import variables as v
from dashboards.common import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    YELLOW,
    Json,
    annotation,
    barchart,
    dashboard,
    override,
    row,
    stat,
    table,
    thresholds,
    timeseries,
    value_mappings,
)
from dashboards.queries import session as q

UID = "vr-lab-session-review"

SCORE = thresholds((None, RED), (60, YELLOW), (80, GREEN))  # domain notes: 60 pass, 80 good
PASSED = value_mappings({"1": ("PASS", GREEN), "0": ("FAIL", RED)})


def _band_overrides() -> list[Json]:
    """The tolerance band: lo/hi as dashed lines with the area between them filled."""
    band = {"mode": "fixed", "fixedColor": GREEN}
    dashed = {"dash": [6, 4], "fill": "dash"}
    return [
        override("hi", color=band, **{"custom.fillBelowTo": "lo", "custom.fillOpacity": 15,
                                      "custom.lineStyle": dashed, "displayName": "upper"}),
        override("lo", color=band, **{"custom.lineStyle": dashed, "displayName": "lower"}),
        override("ideal", color={"mode": "fixed", "fixedColor": BLUE},
                 **{"custom.lineStyle": dashed, "displayName": "ideal"}),
        override("value", color={"mode": "fixed", "fixedColor": ORANGE},
                 **{"custom.lineWidth": 2, "displayName": "$param"}),
    ]


def build() -> Json:
    panels = [
        stat("Result", q.SUMMARY, width=24, height=4, color_mode="value",
             fields="/^(final_score|passed|level|weakest|alignment_distance|duration|rubric)$/",
             text_mode="value_and_name",
             description="Final score with the rubric version the session ran with.",
             overrides=[
                 override("final_score", thresholds=SCORE, decimals=0, displayName="Score"),
                 override("passed", mappings=PASSED, displayName="Result"),
                 override("duration", unit="s", displayName="Duration"),
                 override("alignment_distance", decimals=2, displayName="DTW distance"),
             ]),
        row("Process parameters"),
        timeseries("$param", q.PARAM_BAND, overrides=_band_overrides(), width=12, height=8,
                   repeat="param", max_per_row=2,
                   description="Window mean against the tolerance band the rubric scored "
                               "with; cues are annotations."),
        timeseries("Time in window", q.IN_WINDOW, unit="percent", minimum=0, maximum=100,
                   description="Share of each scoring window inside the band, per parameter."),
        timeseries("Progress and alignment", q.ALIGNMENT,
                   description="Progress through the expert reference and the running DTW "
                               "distance to it (lower is closer).",
                   overrides=[
                       override("progress", unit="percent", **{"custom.axisPlacement": "right"}),
                       override("window_score", unit="none",
                                **{"custom.axisPlacement": "right"}),
                   ]),
        row("Score"),
        barchart("Score breakdown", q.SCORE_BREAKDOWN, x_field="metric", horizontal=True,
                 maximum=100, overrides=[override("score", thresholds=SCORE)],
                 description="Per-metric score (0-100) and its weight in the final score (%)."),
        table("Metrics", q.METRICS_TABLE,
              description="Raw metric, band, time in window, weight and score as scored.",
              overrides=[override("in_window", unit="percent", decimals=0),
                         override("score", thresholds=SCORE, decimals=0,
                                  **{"custom.cellOptions": {"type": "color-background"}})]),
        row("Data quality"),
        stat("Data quality", q.DATA_QUALITY, width=12, height=5, color_mode="value",
             description="Gaps, interpolated and missing frames, duplicates, NACKs, clock "
                         "offset and round trip (shown beside every score).",
             overrides=[
                 override("interpolated", unit="percent", decimals=1,
                          thresholds=thresholds((None, GREEN), (1, YELLOW), (5, RED))),
                 override("missing", unit="percent", decimals=1,
                          thresholds=thresholds((None, GREEN), (1, YELLOW), (5, RED))),
                 override("gaps", thresholds=thresholds((None, GREEN), (1, YELLOW))),
                 override("clock_offset", unit="ms"),
                 override("clock_rtt", unit="ms"),
             ]),
        timeseries("Stored frames per second", q.FRAME_RATE, unit="none", width=12, height=5,
                   description="Dips are gaps; valid = every tracker seen."),
        table("Session events", q.EVENTS, width=24, height=6,
              description="State changes, lost rigs, instructor notes."),
    ]
    return dashboard(
        UID, "Session review",
        description="One session: each process parameter against its band, cues, alignment "
                    "to the expert, score breakdown and data quality.",
        panels=panels,
        variables=[v.site(), v.klass(), v.trainee(), v.exercise(), v.session(),
                   v.session_param()],
        annotations=[annotation("Cues", q.CUE_ANNOTATIONS, ORANGE),
                     annotation("Session events", q.EVENT_ANNOTATIONS, BLUE)],
        time_from="now-7d", tags=("review",),
    )
