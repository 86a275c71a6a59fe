"""Competition: live standings per event and heat, starts across sites, judges, appeals."""

from __future__ import annotations

from dashboards import variables as v
from dashboards.common import (
    GREEN,
    RED,
    YELLOW,
    Json,
    dashboard,
    override,
    query_variable,
    stat,
    table,
    thresholds,
    value_mappings,
)
from dashboards.queries import competition as q

UID = "vr-lab-competition"

STATES = value_mappings({"started": ("started", GREEN), "late": ("late", YELLOW),
                         "failed": ("failed", RED)})


def build() -> Json:
    panels = [
        table("Standings (event)", q.STANDINGS, width=24,
              description="Total = (1 − w) × measured + w × judged; ties: measured, judged, "
                          "time in window (docs/competitions.md). Live: measured marks appear "
                          "when the referee scores, judged ones when all judges have marked."),
        table("Standings (selected heats)", q.HEAT_STANDINGS, width=24,
              description="The same ranking within the selected heats."),
        stat("Start spread", q.SPREAD, width=8, height=5, unit="ms",
             steps=thresholds((None, GREEN), (50, YELLOW), (100, RED)),
             description="Max − min start time over the heats' started rigs, on the "
                         "coordinator's clock, and the stated tolerance."),
        table("Site clocks at the start", q.SITE_CLOCKS, width=16, height=5,
              description="Each site controller's clock offset to the coordinator and the "
                          "probe round trip, measured before the start."),
        table("Starts", q.STARTS, width=24,
              description="Every competitor's start; late and failed rigs keep their reason.",
              overrides=[override("start_state", mappings=STATES,
                                  **{"custom.cellOptions": {"type": "color-text"}})]),
        table("Judge marks", q.JUDGE_MARKS, width=12,
              description="Each judge independently, 0-3 per aspect; spread > 1 needs review.",
              overrides=[override("spread", thresholds=thresholds((None, GREEN), (2, RED)),
                                  **{"custom.cellOptions": {"type": "color-background"}})]),
        table("Appeals", q.APPEALS, width=12,
              description="Re-scored from the stored samples under the appealed rubric; the "
                          "official mark stays frozen."),
    ]
    return dashboard(
        UID, "Competition",
        description="Live leaderboard per event and heat, coordinated starts across sites, "
                    "judges' marks and appeals.",
        panels=panels,
        variables=[v.site(),
                   query_variable("competition", "Competition", q.COMPETITIONS),
                   query_variable("event", "Event", q.EVENTS),
                   query_variable("heat", "Heat", q.HEATS, multi=True, include_all=True)],
        time_from="now-24h", refresh="10s", tags=("competition",),
    )
