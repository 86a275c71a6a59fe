"""`labctl controller run`: the lab controller process; plus the API client helper for the CLI."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lab_controller.cli._common import CliError, settings_from
from lab_controller.controller import (
    ApiClient,
    ClientSecurity,
    Controller,
    ControllerConfig,
    DurableSink,
    SecurityError,
    ServerSecurity,
    SessionObserver,
    SpoolSink,
)
from lab_controller.settings import ConfigFileError, LabSettings

log = logging.getLogger(__name__)


def _settings(ctx: click.Context) -> LabSettings:
    try:
        return settings_from(ctx)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from exc


def _load_factory(spec: str) -> Callable[..., Any]:
    """`module:attribute` → the attribute (a factory called with the settings)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"{spec!r}: expected module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"cannot load {spec}: {exc}") from exc
    if not callable(factory):
        raise CliError(f"{spec} is not callable")
    return factory  # type: ignore[no-any-return]


def api_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options every API-using command shares: endpoint, keys, timeout."""
    f = click.option("--timeout", type=float, default=10.0, show_default=True,
                     help="Seconds to wait for the controller.")(f)
    f = click.option("--server-key", type=click.Path(dir_okay=False, path_type=Path),
                     envvar="LABCTL_CONTROLLER_PUBLIC_KEY",
                     help="Controller public key file (CurveZMQ).")(f)
    f = click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path),
                     envvar="LABCTL_INSTRUCTOR_KEY",
                     help="Your instructor .key_secret file (CurveZMQ).")(f)
    f = click.option("--api", "api_endpoint", default=None,
                     help="Controller API endpoint (default: controller.api_endpoint).")(f)
    return f


def api_client(ctx: click.Context, api_endpoint: str | None, key_file: Path | None,
               server_key: Path | None, timeout: float) -> ApiClient:
    """An API client from the settings and the shared options."""
    settings = _settings(ctx)
    endpoint = api_endpoint or settings.controller.api_endpoint
    security = None
    if key_file is not None or server_key is not None:
        if key_file is None or server_key is None:
            raise CliError("CurveZMQ needs both --key and --server-key")
        try:
            security = ClientSecurity.load(key_file, server_key)
        except SecurityError as exc:
            raise CliError(str(exc)) from exc
    return ApiClient(endpoint, timeout_s=timeout, security=security)


def exercise_scene(exercise_id: str) -> dict[str, Any]:
    """START's scene for a library exercise, read from ``data/<id>/exercise.json``.

    Read directly rather than through `lab_controller.exercises.scene_for`: importing that
    package pulls in the scoring kernels (numba, ~2 s here), which would either delay a
    restarted controller or block its loop at the first START. The file layout is the one the
    library documents; the scene is the JSON object under ``"scene"``.
    """
    spec = importlib.util.find_spec("lab_controller.exercises")
    roots = list(spec.submodule_search_locations or []) if spec else []
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", exercise_id) or exercise_id.startswith("."):
        raise LookupError(f"invalid exercise id {exercise_id!r}")
    for root in roots:
        path = Path(root) / "data" / exercise_id / "exercise.json"
        if path.is_file():
            scene = json.loads(path.read_text(encoding="utf-8"))["scene"]
            if not isinstance(scene, dict):
                raise LookupError(f"{path}: scene is not an object")
            return scene
    raise LookupError(f"unknown exercise {exercise_id!r}")


@click.group("controller")
def controller_group() -> None:
    """Run the lab controller (rig registry, sessions, data path, instructor API)."""


@controller_group.command("run")
@click.option("--control", "control_endpoint", help="Control endpoint (bind).")
@click.option("--data", "data_endpoint", help="Data endpoint (bind).")
@click.option("--api", "api_endpoint", help="Instructor API endpoint (bind).")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Spool directory (default: SPOOL_DIR/controller of the settings).")
@click.option("--spool-max-bytes", type=int, default=None,
              help="Stop acknowledging (back-pressure) when the spool holds this much.")
@click.option("--heartbeat-interval", type=float, help="Seconds between heartbeats.")
@click.option("--grace", type=float, help="Seconds an interrupted session waits for its rig.")
@click.option("--store", type=click.Choice(["telemetry", "spool"]), default="telemetry",
              show_default=True,
              help="telemetry: score every session and store everything in TimescaleDB (the "
              "configured DSN or the managed database, migrated at start); spool: keep samples "
              "in the local spool only (no database, no scoring).")
@click.option("--scoring-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Score in N local worker processes behind a ZeroMQ pool instead of in this "
              "process (0 = in-process). Workers on other machines join with "
              "`labctl workers run --connect` to --scoring-bind.")
@click.option("--scoring-bind", default="tcp://127.0.0.1:5570", show_default=True,
              help="Endpoint of the scoring pool (with --scoring-workers or remote workers).")
@click.option("--realtime-priority", type=click.IntRange(1, 99), default=None,
              help="Run the loop and its ZeroMQ threads SCHED_RR at this priority, so the "
              "rigs, the database and other work on the machine cannot delay a chunk for a "
              "scheduler slice (needs root or CAP_SYS_NICE; refused: runs normally).")
@click.option("--sink", "sink_spec", help="module:factory(settings) returning a DurableSink "
              "(overrides --store).")
@click.option("--observer", "observer_specs", multiple=True,
              help="module:factory(settings) returning a SessionObserver (repeatable).")
@click.pass_context
def run_command(
    ctx: click.Context,
    control_endpoint: str | None,
    data_endpoint: str | None,
    api_endpoint: str | None,
    spool_dir: Path | None,
    spool_max_bytes: int | None,
    heartbeat_interval: float | None,
    grace: float | None,
    store: str,
    scoring_workers: int,
    scoring_bind: str,
    realtime_priority: int | None,
    sink_spec: str | None,
    observer_specs: tuple[str, ...],
) -> None:
    """Run the controller until interrupted (Ctrl-C or SIGTERM)."""
    settings = _settings(ctx)
    overrides: dict[str, Any] = {}
    for key, value in (("control_endpoint", control_endpoint), ("data_endpoint", data_endpoint),
                       ("api_endpoint", api_endpoint),
                       ("heartbeat_interval_s", heartbeat_interval),
                       ("interrupted_grace_s", grace),
                       ("realtime_priority", realtime_priority)):
        if value is not None:
            overrides[key] = value
    cfg = ControllerConfig.from_settings(settings, **overrides)
    security = None
    if cfg.curve_secret_key_file is not None:
        if cfg.curve_allowed_keys_dir is None:
            raise CliError("controller.curve_allowed_keys_dir is required with a secret key")
        try:
            security = ServerSecurity.load(cfg.curve_secret_key_file, cfg.curve_allowed_keys_dir)
        except SecurityError as exc:
            raise CliError(str(exc)) from exc
    sink: DurableSink
    pipeline = None
    pool = None
    event_sink = None
    observers: list[SessionObserver] = []
    if sink_spec:
        sink = _load_factory(sink_spec)(settings)
    elif store == "telemetry":
        from lab_controller.cli.db import database_dsn
        from lab_controller.pipeline import LabPipeline
        from telemetry.migrate import migrate
        from telemetry.writer import WriterConfig

        dsn = database_dsn(settings, start=True)
        try:
            migrate(dsn)
        except Exception as exc:
            raise CliError(f"cannot migrate the telemetry database: {exc}") from exc
        pipeline = LabPipeline(dsn, WriterConfig(site_id=settings.site_id,
                                                 spool_dir=settings.spool_dir / "writer"),
                               scoring=scoring_workers == 0)
        pipeline.start()
        sink = pipeline.sink
        observers.append(pipeline.observer)
        event_sink = pipeline.on_event
        if scoring_workers > 0:
            from lab_controller.scoring_workers import (
                PipelineOutputs,
                PoolScoringObserver,
                ScoringPool,
                telemetry_history,
            )

            # Sessions stay on one worker; a dead worker's sessions are rebuilt from the
            # samples stored in TimescaleDB (docs/scoring-workers.md).
            pool = ScoringPool(scoring_bind, history=telemetry_history(dsn), retain_s=60.0).start()
            pool.spawn(scoring_workers)
            observers.append(PoolScoringObserver(pool, PipelineOutputs(pipeline)))
    else:
        # Its own subdirectory: one Spool per directory (the telemetry writer's outage spool
        # lives beside it under the same spool_dir).
        sink = SpoolSink(spool_dir or settings.spool_dir / "controller", max_bytes=spool_max_bytes)
    observers.extend(_load_factory(s)(settings) for s in observer_specs)
    ctrl = Controller(cfg, sink, observers=observers, security=security,
                      scene_for=exercise_scene, event_sink=event_sink)
    if pipeline is not None:
        pipeline.attach(ctrl)
    done = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        endpoints = ctrl.start()
    except Exception as exc:
        sink.close()
        if pipeline is not None:
            pipeline.close()
        raise CliError(f"controller failed to start: {exc}") from exc
    mode = "CurveZMQ" if security else "plain (loopback)"
    click.echo(f"controller {ctrl.controller_id} pid {os.getpid()} {mode} listening: "
               + " ".join(f"{k}={v}" for k, v in endpoints.items()), err=False)
    try:
        while not done.wait(0.5):
            pass
    finally:
        ctrl.stop()
        sink.close()
        if pool is not None:
            pool.close()
        if pipeline is not None:
            pipeline.close()
        click.echo("controller stopped")


@controller_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
@click.pass_context
def status_command(ctx: click.Context, /, as_json: bool, api_endpoint: str | None,
                   key_file: Path | None, server_key: Path | None, timeout: float) -> None:
    """Controller health: sessions by state, bad input per kind, cue latency, storage."""
    from rich.console import Console
    from rich.table import Table

    from lab_controller import protocol as P
    from lab_controller.controller import ApiError

    with api_client(ctx, api_endpoint, key_file, server_key, timeout) as client:
        try:
            status: dict[str, Any] = client.request(P.ApiRigs()).data["controller"]
        except ApiError as exc:
            raise CliError(str(exc)) from exc
    if as_json:
        from lab_controller.cli._common import echo_json

        echo_json(status)
        return
    t = Table(show_header=False, title=f"Controller {status['controller_id']}",
              title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    lat = status.get("cue_latency_ms", {})
    sink = status.get("sink", {})
    rows = [
        ("Up for", f"{status['uptime_s'] / 60:.1f} min"),
        ("Rigs", f"{status['rigs_alive']} alive of {status['rigs']}"),
        ("Sessions", ", ".join(f"{v} {k}" for k, v in sorted(status["sessions_by_state"].items()))
         or "none"),
        ("Bad input", ", ".join(f"{v} {k}" for k, v in sorted(status["bad_input"].items()))
         or "none"),
        ("Cue latency", f"p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms ({lat.get('n', 0)} cues)"
         if lat.get("n") else "no cues yet"),
        ("Storage", f"{sink.get('commits', '?')} commits, {sink.get('queued_chunks', 0)} chunks "
         f"queued" + (f", ERROR {sink['last_error']}" if sink.get("last_error") else "")),
        ("Held back (back-pressure)", f"{status['held_chunks']} chunks now, "
         f"{status['held_events']} times"),
        ("Dead-rig detections", str(len(status.get("dead_detections", [])))),
    ]
    for label, value in rows:
        t.add_row(label, value)
    Console().print(t)
