"""The main job end to end: a whole simulated VR class on real components.

Managed TimescaleDB (or a configured DSN) → migrations → the telemetry writer and the scoring
pipeline → the lab controller (real ZeroMQ sockets on free loopback ports) → a fleet of
simulated rigs in worker processes (full protocol peers) → one class launch through the
instructor API → live view → results, data-quality accounting and generated dashboards.

This is the one place where `lab_controller` starts `devices` (the simulated rigs).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab_controller import protocol as P
from lab_controller.controller.config import ControllerConfig
from lab_controller.controller.core import Controller
from lab_controller.controller.transport import ApiClient
from lab_controller.exercises import exercise_ids, load_exercise, scene_for
from lab_controller.pipeline import LabPipeline, LiveSession
from telemetry import migrate as tmigrate
from telemetry import queries as tqueries
from telemetry import reference as tref
from telemetry.writer import WriterConfig

log = logging.getLogger(__name__)

DEFAULT_RIGS = 12
DEFAULT_EXERCISE = "fillet_t_joint_h"
DEFAULT_SKILL_MIX = "expert:0.25,intermediate:0.5,novice:0.25"
CLASS_ID = "demo-class"
# Simulated names for the separately permissioned identity table (never shown on dashboards).
_DEMO_NAMES = ("Li Wei", "Wang Fang", "Zhang Min", "Liu Yang", "Chen Jie", "Yang Lei",
               "Zhao Jing", "Huang Tao", "Zhou Yan", "Wu Hao", "Xu Lin", "Sun Qiang")


@dataclass(frozen=True)
class DemoOptions:
    """What `labctl demo` runs (each field is a command-line option)."""

    rigs: int = DEFAULT_RIGS
    exercise: str = DEFAULT_EXERCISE
    duration_s: float | None = None  # None: until every trainee finished the exercise
    seed: int = 0
    skill_mix: str = DEFAULT_SKILL_MIX
    headless: bool = False
    rig_processes: int = 2
    site_id: str = "site-01"
    spool_dir: Path = Path("/tmp/labctl-demo-spool")
    dashboards_dir: Path | None = None
    max_wait_s: float = 180.0  # hard stop for a run that does not end on its own


@dataclass
class RigSummary:
    """One line of the results table."""

    rig_id: str
    trainee: str
    session_id: str | None
    state: str
    score: float | None = None
    passed: bool | None = None
    level: str | None = None
    weakest: str | None = None
    samples_declared: int = 0  # by the rig's END_OF_STREAM (last seq + 1)
    samples_received: int = 0
    samples_stored: int = 0
    gaps: int = 0
    duplicates: int = 0
    windows: int = 0
    cues: int = 0
    reason: str = ""


@dataclass
class DemoReport:
    """What the demo measured (the test and the headless log read this)."""

    exercise: str
    rigs: int
    started: int
    not_started: list[str]
    start_spread_s: float
    rows: list[RigSummary] = field(default_factory=list)
    samples_produced: int = 0
    samples_sent: int = 0
    samples_stored: int = 0
    duplicates_dropped: int = 0
    score_windows: int = 0
    dashboards_dir: str | None = None
    dashboards: list[str] = field(default_factory=list)
    cue_latency_ms: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def lossless(self) -> bool:
        return self.samples_stored == self.samples_produced and all(
            r.samples_stored == r.samples_received == r.samples_declared for r in self.rows
        )

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in vars(self).items() if k != "rows"}
        d["rows"] = [vars(r) for r in self.rows]
        d["lossless"] = self.lossless
        return d


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prepare_database(dsn: str, opts: DemoOptions, trainees: list[str], rig_ids: list[str]) -> None:
    """Schema, site, class, trainees (pseudonyms + identities), rigs, exercise and rubric."""
    tmigrate.migrate(dsn)
    ex = load_exercise(opts.exercise)
    tref.upsert_site(dsn, opts.site_id, name="Demo training centre")
    tref.upsert_class(dsn, CLASS_ID, opts.site_id, name="Welding class (demo)",
                      instructor="demo instructor")
    for i, trainee in enumerate(trainees):
        tref.upsert_trainee(dsn, trainee, opts.site_id, CLASS_ID,
                            real_name=_DEMO_NAMES[i % len(_DEMO_NAMES)] + f" ({i + 1})",
                            national_id=None)
    for rig in rig_ids:
        tref.upsert_rig(dsn, opts.site_id, rig, name=f"simulated rig {rig}")
    tref.upsert_exercise(dsn, ex.id, family=ex.kind, name=ex.title, geometry=ex.scene)
    try:
        tref.add_rubric(dsn, ex.rubric.rubric_id, int(ex.rubric.version), ex.id,
                        json.loads(ex.rubric.model_dump_json()), pass_mark=ex.rubric.pass_mark)
    except tref.RubricVersionError as exc:
        log.warning("%s", exc)


class DemoRun:
    """One demo run; `run()` returns the report. Ctrl-C stops the class and keeps the data."""

    def __init__(self, dsn: str, opts: DemoOptions,
                 printer: Callable[[str], None] = print) -> None:
        if opts.exercise not in exercise_ids():
            raise ValueError(f"unknown exercise {opts.exercise!r}; choose from {exercise_ids()}")
        if opts.rigs < 1:
            raise ValueError("--rigs must be at least 1")
        self.dsn = dsn
        self.opts = opts
        self.say = printer
        self.rig_ids = [f"sim-{i:03d}" for i in range(opts.rigs)]
        self.trainees = [f"T{opts.seed:02d}-{i + 1:03d}" for i in range(opts.rigs)]
        self.session_of: dict[str, str] = {}
        self.fleet_stats: dict[int, dict[str, Any]] = {}
        self._stats_lock = threading.Lock()

    # ---- the steps ----------------------------------------------------------------------
    def run(self) -> DemoReport:
        opts = self.opts
        self.say(f"preparing the database (migrations, class {CLASS_ID}, "
                 f"{opts.rigs} trainees, exercise {opts.exercise})")
        prepare_database(self.dsn, opts, self.trainees, self.rig_ids)
        pipeline = LabPipeline(self.dsn, WriterConfig(site_id=opts.site_id,
                                                      spool_dir=opts.spool_dir / "writer"))
        pipeline.start()
        ports = [_free_port() for _ in range(3)]
        cfg = ControllerConfig(
            control_endpoint=f"tcp://127.0.0.1:{ports[0]}",
            data_endpoint=f"tcp://127.0.0.1:{ports[1]}",
            api_endpoint=f"tcp://127.0.0.1:{ports[2]}",
            site_id=opts.site_id,
        )
        controller = Controller(cfg, pipeline.sink, observers=[pipeline.observer],
                                event_sink=pipeline.on_event)
        controller.start()
        pipeline.attach(controller, interval_s=2.0)
        self.say(f"controller listening on {cfg.control_endpoint} (control), "
                 f"{cfg.data_endpoint} (data), {cfg.api_endpoint} (instructor API)")
        from devices.fleet import Fleet, FleetSpec  # the demo is where the controller meets rigs

        spec = FleetSpec(controller=cfg.control_endpoint, count=opts.rigs,
                         skill_mix=opts.skill_mix, seed=opts.seed, rig_prefix="sim",
                         processes=max(1, min(opts.rig_processes, opts.rigs)),
                         data_endpoint=cfg.data_endpoint, site_id=opts.site_id,
                         warmup_scenes=[scene_for(opts.exercise)])
        fleet = Fleet(spec, stats_every=0.5)
        report = DemoReport(exercise=opts.exercise, rigs=opts.rigs, started=0, not_started=[],
                            start_spread_s=0.0)
        api = ApiClient(cfg.api_endpoint, timeout_s=30.0)
        try:
            fleet.start()
            self._read_fleet_stats(fleet)
            self.say(f"started {opts.rigs} simulated rigs ({opts.skill_mix}) in "
                     f"{len(fleet.procs)} processes")
            self._wait_registered(controller, timeout_s=60.0)
            launch = self._class_launch(api, report)
            for row in launch.get("results", []):
                if row.get("session_id"):
                    self.session_of[row["rig_id"]] = row["session_id"]
            try:
                self._watch(controller, pipeline, api)
            except KeyboardInterrupt:
                report.interrupted = True
                self.say("interrupted: stopping every session (data is kept)")
                self._stop_all(api)
            self._wait_terminal(controller, timeout_s=30.0)
        finally:
            api.close()
            codes = fleet.stop()
            controller.stop()
            self.say(f"rigs stopped (exit codes {codes}); flushing telemetry")
            pipeline.close(timeout=60.0)
        self._collect(report, controller, pipeline)
        self._dashboards(report)
        return report

    def _read_fleet_stats(self, fleet: Any) -> None:
        def reader(index: int, stream: Any) -> None:
            for line in stream:
                try:
                    stats = json.loads(line)
                except ValueError:
                    continue
                with self._stats_lock:
                    self.fleet_stats[index] = stats
        for i, proc in enumerate(fleet.procs):
            threading.Thread(target=reader, args=(i, proc.stdout), daemon=True).start()

    def _wait_registered(self, controller: Controller, timeout_s: float) -> None:
        """Wait until every rig passes the launch health check (alive, trackers, clock)."""
        from lab_controller.controller.launch import health_check

        deadline = time.monotonic() + timeout_s
        pending = list(self.rig_ids)
        while time.monotonic() < deadline:
            pending = [r for r in self.rig_ids if not health_check(controller, r).ok]
            if not pending:
                self.say(f"all {len(self.rig_ids)} rigs registered, tracking, clocks synchronised")
                return
            time.sleep(0.1)
        reasons = {r: health_check(controller, r).reasons for r in pending}
        self.say(f"warning: {len(pending)} rigs not ready; the launch will report them: {reasons}")

    def _class_launch(self, api: ApiClient, report: DemoReport) -> dict[str, Any]:
        opts = self.opts
        reply = api.request(P.ApiClassLaunch(
            exercise_id=opts.exercise, rigs=self.rig_ids, trainees=self.trainees,
            duration_s=opts.duration_s,
            params={"scene": scene_for(opts.exercise), "class_id": CLASS_ID},
        ), timeout_s=60.0)
        data = reply.data
        report.started = int(data.get("started", 0))
        report.not_started = list(data.get("not_started", []))
        report.start_spread_s = float(data.get("start_spread_s", 0.0))
        self.say(f"class launch: {report.started}/{opts.rigs} started within "
                 f"{report.start_spread_s * 1000:.1f} ms"
                 + (f"; not started: {report.not_started}" if report.not_started else ""))
        return data

    def _sessions_done(self, controller: Controller) -> bool:
        for sid in self.session_of.values():
            s = controller.sessions.get(sid)
            if s is not None and s.active:
                return False
        return True

    def _watch(self, controller: Controller, pipeline: LabPipeline, api: ApiClient) -> None:
        opts = self.opts
        nominal = load_exercise(opts.exercise).nominal_duration_s
        expected = opts.duration_s if opts.duration_s is not None else nominal
        t0 = time.monotonic()
        hard_stop = t0 + (opts.duration_s + 30.0 if opts.duration_s else opts.max_wait_s)
        stopped = False
        view = None if opts.headless else _LiveView(self, controller, pipeline, expected)
        next_log = t0
        try:
            if view is not None:
                view.start()
            while not self._sessions_done(controller):
                now = time.monotonic()
                if now >= hard_stop and not stopped:
                    self.say("time is up: stopping the remaining sessions")
                    self._stop_all(api)
                    stopped = True
                if view is not None:
                    view.update(now - t0)
                elif now >= next_log:
                    self._log_line(controller, pipeline, now - t0)
                    next_log = now + 2.0
                time.sleep(0.25)
        finally:
            if view is not None:
                view.stop()
        if opts.headless:
            self._log_line(controller, pipeline, time.monotonic() - t0)

    def _log_line(self, controller: Controller, pipeline: LabPipeline, elapsed: float) -> None:
        lives = [pipeline.live.get(sid) for sid in self.session_of.values()]
        running = sum(1 for lv in lives if lv is not None and lv.state == "running")
        scores = [lv.window_score for lv in lives if lv is not None and math.isfinite(lv.window_score)]
        cues = sum(lv.cues for lv in lives if lv is not None)
        samples = sum(lv.samples for lv in lives if lv is not None)
        mean = f"{sum(scores) / len(scores):.1f}" if scores else "-"
        self.say(f"t={elapsed:5.1f}s running={running}/{len(self.session_of)} "
                 f"samples={samples} mean_window_score={mean} cues={cues} "
                 f"writer={pipeline.writer.stats().state.value}")

    def _stop_all(self, api: ApiClient) -> None:
        for sid in self.session_of.values():
            try:
                api.request(P.ApiSessionStop(session_id=sid, reason="demo stopped"), timeout_s=10)
            except Exception as exc:  # a finished session refuses STOP; that is fine
                log.info("stop %s: %s", sid, exc)

    def _wait_terminal(self, controller: Controller, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._sessions_done(controller):
            time.sleep(0.1)

    def _collect(self, report: DemoReport, controller: Controller, pipeline: LabPipeline) -> None:
        with self._stats_lock:
            stats = list(self.fleet_stats.values())
        report.samples_sent = sum(int(s.get("samples_sent", 0)) for s in stats)
        lat = controller.status().get("cue_latency_ms", {})
        report.cue_latency_ms = dict(lat) if isinstance(lat, dict) else {}
        for rig, trainee in zip(self.rig_ids, self.trainees, strict=True):
            sid = self.session_of.get(rig)
            row = RigSummary(rig_id=rig, trainee=trainee, session_id=sid, state="not started")
            if sid is not None:
                s = controller.sessions.get(sid)
                srow = controller.session_row(s) if s is not None else {}
                row.state = str(srow.get("state", "?"))
                row.reason = str(srow.get("reason") or "")
                row.samples_received = int(srow.get("samples", 0))
                row.gaps = int(srow.get("gaps", 0))
                row.duplicates = int(srow.get("duplicates", 0))
                eos = srow.get("end_of_stream") or {}
                # The rig's own END_OF_STREAM says how many samples it produced (last seq + 1).
                row.samples_declared = int(eos.get("last_seq", -1)) + 1
                live: LiveSession | None = pipeline.live.get(sid)
                if live is not None:
                    row.windows, row.cues = live.windows, live.cues
                summary = tqueries.session_summary(self.dsn, uuid.UUID(sid))
                if summary is not None:
                    row.samples_stored = summary.frames_stored
                    row.score = summary.final_score
                    row.passed = summary.passed
                    row.level = summary.level
                    row.weakest = summary.weakest_parameter
            report.rows.append(row)
        report.samples_produced = sum(r.samples_declared for r in report.rows)
        report.samples_stored = sum(r.samples_stored for r in report.rows)
        report.duplicates_dropped = sum(r.duplicates for r in report.rows)
        report.score_windows = sum(r.windows for r in report.rows)

    def _dashboards(self, report: DemoReport) -> None:
        out = self.opts.dashboards_dir
        if out is None:
            return
        from dashboards import all_dashboards  # generated as code, no Grafana needed
        from dashboards.files import write_all

        written = write_all(out, all_dashboards())
        report.dashboards_dir = str(out)
        report.dashboards = [str(p) for p in written]


class _LiveView:
    """The rich terminal view: one row per rig plus a progress bar for the exercise."""

    def __init__(self, run: DemoRun, controller: Controller, pipeline: LabPipeline,
                 expected_s: float) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.run = run
        self.controller = controller
        self.pipeline = pipeline
        self.progress = Progress(TextColumn("exercise"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeElapsedColumn())
        self.task = self.progress.add_task("exercise", total=100.0)
        self._group = Group
        self.live = Live(refresh_per_second=4, transient=False)
        self.expected_s = max(1.0, expected_s)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def update(self, elapsed: float) -> None:
        from rich.table import Table

        table = Table(title=f"class {CLASS_ID}: {self.run.opts.exercise}", expand=False)
        for col in ("rig", "trainee", "state", "progress", "score", "out of window", "cues",
                    "rate/s", "backlog"):
            table.add_column(col, justify="right" if col in ("progress", "score", "cues",
                                                             "rate/s", "backlog") else "left")
        progresses = []
        for rig, trainee in zip(self.run.rig_ids, self.run.trainees, strict=True):
            sid = self.run.session_of.get(rig)
            lv = self.pipeline.live.get(sid) if sid else None
            rec = self.controller.registry.get(rig)
            rrow = self.controller.rig_row(rec) if rec is not None else {}
            rate = rrow.get("sample_rate_hz") or rrow.get("rate_hz") or 0.0
            backlog = rrow.get("backlog_chunks", rrow.get("backlog", 0))
            if lv is None:
                table.add_row(rig, trainee, "not started", "", "", "", "", "", "")
                continue
            prog = lv.progress if math.isfinite(lv.progress) else 0.0
            progresses.append(prog)
            score = f"{lv.window_score:.0f}" if math.isfinite(lv.window_score) else "-"
            style = "red" if lv.out_of_window else ""
            table.add_row(rig, trainee, lv.state, f"{100 * prog:.0f}%", score,
                          f"[{style}]{', '.join(lv.out_of_window) or '-'}[/]" if style else "-",
                          str(lv.cues), f"{float(rate):.0f}", str(backlog))
        pct = 100.0 * (sum(progresses) / len(progresses)) if progresses else 0.0
        self.progress.update(self.task, completed=max(pct, min(99.0, 100 * elapsed / self.expected_s)))
        self.live.update(self._group(table, self.progress))


def format_results(report: DemoReport) -> list[str]:
    """Plain-text results table and data-quality summary (the headless output)."""
    lines = [f"{'rig':8} {'trainee':9} {'state':9} {'score':>6} {'pass':>5} {'level':12} "
             f"{'weakest':16} {'received':>8} {'stored':>8} {'gaps':>4} {'dups':>5}"]
    for r in report.rows:
        score = f"{r.score:.1f}" if r.score is not None else "-"
        passed = "-" if r.passed is None else ("yes" if r.passed else "no")
        lines.append(f"{r.rig_id:8} {r.trainee:9} {r.state:9} {score:>6} {passed:>5} "
                     f"{(r.level or '-'):12} {(r.weakest or '-'):16} {r.samples_received:>8} "
                     f"{r.samples_stored:>8} {r.gaps:>4} {r.duplicates:>5}")
    lines.append(
        f"data quality: samples the rigs declared (END_OF_STREAM) {report.samples_produced}, stored "
        f"{report.samples_stored} ({'nothing lost' if report.lossless else 'MISMATCH'}); "
        f"duplicates dropped {report.duplicates_dropped}; score windows {report.score_windows}"
    )
    if report.cue_latency_ms:
        lines.append(f"cue latency (chunk arrival → cue sent, ms): {report.cue_latency_ms}")
    return lines
