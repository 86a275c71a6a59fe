"""`labctl demo`: the main job (filled in by the end-to-end issue)."""

from __future__ import annotations

import click

from lab_controller.cli._common import CliError, settings_from
from lab_controller.cli.db import managed_cluster
from lab_controller.settings import ConfigFileError
from telemetry.cluster import ClusterError


@click.command("demo")
@click.pass_context
def demo_command(ctx: click.Context) -> None:
    """Run a simulated VR class end to end (controller, rigs, scoring, telemetry, dashboards)."""
    try:
        settings = settings_from(ctx)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from exc
    if settings.database.dsn is None:
        try:
            cluster = managed_cluster(settings)
            cluster.start()
            cluster.create_database(settings.database.database)
            st = cluster.status(settings.database.database)
        except ClusterError as exc:
            raise CliError(str(exc)) from exc
        click.echo(
            f"managed TimescaleDB {st.timescaledb_version} (license {st.timescaledb_license}) "
            f"running in {st.data_dir} on port {st.port}"
        )
    click.echo("The rest of the demo (controller, simulated class, scoring) is not built yet.")
