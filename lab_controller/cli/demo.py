"""`labctl demo`: the main job — a whole simulated VR class on real components."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import click

from lab_controller.cli._common import CliError, settings_from
from lab_controller.cli.db import managed_cluster
from lab_controller.settings import ConfigFileError
from telemetry.cluster import ClusterError


@click.command("demo")
@click.option("--rigs", type=click.IntRange(1, 500), default=12, show_default=True,
              help="How many simulated rigs (one trainee each).")
@click.option("--exercise", default="fillet_t_joint_h", show_default=True,
              help="Exercise from the library (fillet_t_joint_h, butt_weave_flat, spray_panel_flat).")
@click.option("--duration", type=click.FloatRange(min=1.0), default=None,
              help="Stop the class after this many seconds (default: when every trainee is done).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the simulated trainees (same seed, same class).")
@click.option("--skill-mix", default="expert:0.25,intermediate:0.5,novice:0.25", show_default=True,
              help="Share of each skill level among the simulated trainees.")
@click.option("--headless", is_flag=True, help="Plain log lines instead of the live view (CI).")
@click.option("--json-report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the run's report as JSON to this file.")
@click.pass_context
def demo_command(ctx: click.Context, rigs: int, exercise: str, duration: float | None, seed: int,
                 skill_mix: str, headless: bool, json_report: Path | None) -> None:
    """Run a simulated VR class end to end: TimescaleDB, controller, rigs, live scores, dashboards.

    Starts the managed database (or uses LABCTL_DATABASE__DSN), migrates it, starts the lab
    controller and a class of simulated trainees of mixed skill, launches the exercise on every
    rig with one class launch, shows each rig live, then prints the results, the data-quality
    accounting and where the Grafana dashboards were written. Ctrl-C stops the class cleanly;
    everything recorded so far is kept.
    """
    from lab_controller.demo import DemoOptions, DemoRun, format_results

    try:
        settings = settings_from(ctx)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from exc
    if settings.database.dsn is not None:
        dsn = settings.database.dsn.get_secret_value()
    else:
        try:
            cluster = managed_cluster(settings)
            cluster.start()
            dsn = cluster.create_database(settings.database.database)
            st = cluster.status(settings.database.database)
        except ClusterError as exc:
            raise CliError(str(exc)) from exc
        click.echo(f"managed TimescaleDB {st.timescaledb_version} (license "
                   f"{st.timescaledb_license}) in {st.data_dir}, port {st.port}")
    spool = settings.state_dir / "demo-spool"
    shutil.rmtree(spool / "writer", ignore_errors=True)  # a fresh writer spool per run
    opts = DemoOptions(rigs=rigs, exercise=exercise, duration_s=duration, seed=seed,
                       skill_mix=skill_mix, headless=headless, site_id=settings.site_id,
                       spool_dir=spool, dashboards_dir=settings.dashboards_dir)
    if not headless:
        logging.getLogger().setLevel(logging.ERROR)  # the live view is the output
    try:
        report = DemoRun(dsn, opts, printer=click.echo).run()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    for line in format_results(report):
        click.echo(line)
    if report.dashboards_dir:
        click.echo(f"dashboards written to {report.dashboards_dir} "
                   f"({sum(p.endswith('.json') for p in report.dashboards)} dashboards + provisioning)")
        click.echo("open them with Grafana: see deploy/README.md (docker compose up -d) or "
                   "`labctl dashboards provision --url http://grafana:3000 --token ...`")
    if json_report is not None:
        json_report.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    if not report.lossless:
        raise CliError("samples produced and samples stored differ (see the table above)")
