"""Lab operations: is every rig streaming, is ingest keeping up, is anything lost."""

from __future__ import annotations

from dashboards import variables as v
from dashboards.common import (
    GREEN,
    RED,
    YELLOW,
    Json,
    barchart,
    dashboard,
    override,
    stat,
    state_timeline,
    table,
    thresholds,
    timeseries,
    value_mappings,
)
from dashboards.queries import operations as q

UID = "vr-lab-operations"

STREAMING = value_mappings({"1": ("streaming", GREEN), "0": ("silent", RED)})


def build() -> Json:
    panels = [
        stat("Rigs now", q.SUMMARY, width=24, height=4, color_mode="value",
             description=f"Rigs that stored a frame in the last {q.STREAMING_WITHIN_S} s, rigs "
                         "the controller reports online, registered rigs."),
        state_timeline("Streaming", q.RIG_STREAMING, mappings=STREAMING,
                       description="Per rig, 10 s slots with stored frames."),
        timeseries("Sample rate", q.SAMPLE_RATE, unit="hertz",
                   description="Stored frames per second per rig (nominal 120 Hz)."),
        timeseries("Ingest lag", q.INGEST_LAG, unit="ms",
                   steps=thresholds((None, GREEN), (500, YELLOW), (2000, RED)),
                   threshold_style="line",
                   description="Time from rig sample to committed row, as the writer reports."),
        timeseries("Spool size", q.SPOOL_BYTES, unit="bytes",
                   description="Data waiting in the local spool (database away or slow)."),
        timeseries("Spool records", q.SPOOL_RECORDS, unit="none",
                   description="Records waiting in the local spool."),
        barchart("Dropped and NACKed frames by kind", q.DROPPED_BY_KIND, x_field="kind",
                 stacked=True, description="Counter increases over the range."),
        timeseries("Dropped and NACKed frames", q.DROPPED_RATE, draw="bars",
                   description="Counter increases per interval."),
        table("Rig status", q.RIG_TABLE, width=24,
              description="Nominal and measured rate, last stored frame, current session state.",
              overrides=[override("since_frame", unit="s", decimals=1,
                                  thresholds=thresholds((None, GREEN), (3, RED)),
                                  **{"custom.cellOptions": {"type": "color-background"}}),
                         override("measured_hz", decimals=1)]),
        table("Frame accounting per session", q.SESSION_LOSS, width=24,
              description="Expected vs stored frames, interpolated, duplicates, NACKs, gaps.",
              overrides=[override("missing", thresholds=thresholds((None, GREEN), (1, RED)),
                                  **{"custom.cellOptions": {"type": "color-background"}})]),
    ]
    return dashboard(
        UID, "Lab operations",
        description="Rigs online, sample rates, ingest lag, spool size, dropped/NACKed frames.",
        panels=panels,
        variables=[v.site(), v.site_rig()],
        time_from="now-1h", refresh="30s", tags=("operations",),
    )
