"""Live class: the instructor's one screen for the whole class, refreshed every 5 s."""

from __future__ import annotations

from dashboards import variables as v
from dashboards.common import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    RED,
    YELLOW,
    Json,
    dashboard,
    override,
    row,
    stat,
    table,
    thresholds,
    timeseries,
    value_mappings,
)
from dashboards.queries import live as q

UID = "vr-lab-live-class"

STATUS = value_mappings({
    str(q.STATUS_OK): ("OK", GREEN),
    str(q.STATUS_STRUGGLING): ("STRUGGLING", ORANGE),
    str(q.STATUS_NO_DATA): ("NO DATA", RED),
    str(q.STATUS_IDLE): ("idle", BLUE),
})
OUT_OF_WINDOW = thresholds((None, GREEN), (q.STRUGGLE_OUT_PCT, ORANGE))
SINCE_SAMPLE = thresholds((None, GREEN), (q.STALE_AFTER_S, RED))
SCORE = thresholds((None, RED), (60, YELLOW), (80, GREEN))  # domain notes: 60 pass, 80 good
NEUTRAL = {"mode": "fixed", "fixedColor": GREY}


def _tile_overrides() -> list[Json]:
    return [
        override("status", mappings=STATUS, **{"color": {"mode": "thresholds"},
                                               "displayName": "Status"}),
        override("progress", unit="percent", decimals=0,
                 thresholds=thresholds((None, BLUE)), displayName="Progress"),
        override("score", decimals=0, thresholds=SCORE, displayName="Score"),
        override("out_of_window", unit="percent", decimals=0, thresholds=OUT_OF_WINDOW,
                 displayName="Out of window (10 s)"),
        override("since_sample", unit="s", decimals=1, thresholds=SINCE_SAMPLE,
                 displayName="Since last sample"),
        # Words stay neutral so only the alerting numbers and the status carry colour.
        override("params_out", displayName="Parameters out", color=NEUTRAL),
        override("trainee", displayName="Trainee", color=NEUTRAL),
        override("exercise", displayName="Exercise", color=NEUTRAL),
    ]


def _grid_overrides() -> list[Json]:
    background = {"type": "color-background", "mode": "basic"}
    return [
        override("status", mappings=STATUS, **{"custom.cellOptions": background,
                                               "color": {"mode": "thresholds"}}),
        override("progress", unit="percent", decimals=0,
                 **{"custom.cellOptions": {"type": "gauge", "mode": "basic"}}),
        override("score", decimals=0, thresholds=SCORE,
                 **{"custom.cellOptions": background}),
        override("out_of_window", unit="percent", decimals=0, thresholds=OUT_OF_WINDOW,
                 **{"custom.cellOptions": background}),
        override("since_sample", unit="s", decimals=1, thresholds=SINCE_SAMPLE,
                 **{"custom.cellOptions": background}),
    ]


def build() -> Json:
    panels = [
        stat("Class now", q.CLASS_SUMMARY, width=24, height=4, color_mode="value",
             description="Running rigs, rigs with a struggling trainee, silent rigs, mean "
                         "window score.",
             overrides=[
                 override("struggling", thresholds=thresholds((None, GREEN), (1, ORANGE))),
                 override("no_data", thresholds=thresholds((None, GREEN), (1, RED))),
                 override("mean_score", decimals=0, thresholds=SCORE),
             ]),
        row("Rigs"),
        stat("Rig $rig", q.RIG_TILES, repeat="rig", width=4, height=7,
             color_mode="background", text_mode="value_and_name",
             fields="/^(status|trainee|exercise|progress|score|out_of_window|params_out|"
                    "since_sample)$/",
             description=f"Orange when more than {q.STRUGGLE_OUT_PCT}% of the last "
                         f"{q.STRUGGLE_WINDOW_S} s were out of window (worst parameter); red "
                         f"when no sample arrived for {q.STALE_AFTER_S} s.",
             overrides=_tile_overrides()),
        row("Class"),
        table("All rigs", q.RIG_TILES, width=24, height=9, overrides=_grid_overrides(),
              description="The same numbers as the tiles, one row per rig (sortable)."),
        timeseries("Window score", q.SCORE_TREND, unit="none", minimum=0, maximum=100,
                   steps=SCORE, threshold_style="line",
                   description="Per rig; the line at 60 is the usual pass mark."),
        timeseries("Out of window (worst parameter)", q.OUT_OF_WINDOW_TREND, unit="percent",
                   minimum=0, maximum=100, steps=OUT_OF_WINDOW, threshold_style="line+area",
                   description=f"Struggling above {q.STRUGGLE_OUT_PCT}%."),
        table("Recent cues", q.RECENT_CUES, width=24, height=8,
              description="The last 50 cues sent to the headsets."),
    ]
    return dashboard(
        UID, "Live class",
        description="One tile per rig: trainee, exercise, progress, score, parameters out of "
                    "window, data freshness; orange = struggling, red = data stopped.",
        panels=panels,
        variables=[v.site(), v.klass(), v.live_rig()],
        time_from="now-15m", refresh="5s", tags=("live",),
    )
