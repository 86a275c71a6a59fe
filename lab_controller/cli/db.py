"""`labctl db`: the telemetry database (managed cluster or a configured DSN)."""

from __future__ import annotations

import os
import shutil

import click

from lab_controller.cli._common import CliError, echo_json, settings_from
from lab_controller.settings import ConfigFileError, LabSettings, mask_dsn
from telemetry.cluster import ClusterError, ManagedCluster, check_dsn


@click.group("db")
def db_group() -> None:
    """Start, stop and inspect the telemetry database (PostgreSQL + TimescaleDB)."""


def _settings(ctx: click.Context) -> LabSettings:
    try:
        return settings_from(ctx)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from exc


def managed_cluster(settings: LabSettings) -> ManagedCluster:
    """The managed cluster described by the settings."""
    return ManagedCluster(settings.database.managed_dir, settings.database.managed_port)


def database_dsn(settings: LabSettings, *, start: bool = False) -> str:
    """The DSN to use: the configured one, or the managed cluster's (started if `start`)."""
    if settings.database.dsn is not None:
        return settings.database.dsn.get_secret_value()
    cluster = managed_cluster(settings)
    try:
        if start:
            cluster.start()
            return cluster.create_database(settings.database.database)
        return cluster.dsn(settings.database.database)
    except ClusterError as exc:
        raise CliError(str(exc)) from exc


@db_group.command("up")
@click.pass_context
def db_up(ctx: click.Context) -> None:
    """Start the managed database (create it on first use). Safe to run twice.

    With a configured DSN (LABCTL_DATABASE__DSN) nothing is started; the DSN is checked instead.
    """
    settings = _settings(ctx)
    if settings.database.dsn is not None:
        dsn = settings.database.dsn.get_secret_value()
        try:
            versions = check_dsn(dsn)
        except ClusterError as exc:
            raise CliError(str(exc)) from exc
        click.echo(f"using configured database {mask_dsn(dsn)}: {versions}")
        return
    cluster = managed_cluster(settings)
    try:
        was_running = cluster.status().running
        cluster.start()
        cluster.create_database(settings.database.database)
        st = cluster.status(settings.database.database)
    except ClusterError as exc:
        raise CliError(str(exc)) from exc
    verb = "already running" if was_running else "started"
    click.echo(
        f"managed database {verb}: {st.data_dir} port {st.port}; PostgreSQL {st.postgres_version}, "
        f"TimescaleDB {st.timescaledb_version} (license: {st.timescaledb_license})"
    )


@db_group.command("down")
@click.option("--immediate", is_flag=True, help="Stop without a checkpoint (crash-like; for tests).")
@click.pass_context
def db_down(ctx: click.Context, immediate: bool) -> None:
    """Stop the managed database; its data is kept for the next `labctl db up`."""
    settings = _settings(ctx)
    if settings.database.dsn is not None:
        raise CliError("a DSN is configured; the managed database is not in use")
    try:
        stopped = managed_cluster(settings).stop("immediate" if immediate else "fast")
    except ClusterError as exc:
        raise CliError(str(exc)) from exc
    click.echo("managed database stopped" if stopped else "managed database was not running")


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def db_status(ctx: click.Context, as_json: bool) -> None:
    """Show whether the database runs, where, and which TimescaleDB (version, license)."""
    settings = _settings(ctx)
    if settings.database.dsn is not None:
        dsn = settings.database.dsn.get_secret_value()
        try:
            versions = check_dsn(dsn)
        except ClusterError as exc:
            raise CliError(str(exc)) from exc
        info: dict[str, object] = {"mode": "dsn", "dsn": mask_dsn(dsn), "running": True, **versions}
    else:
        try:
            st = managed_cluster(settings).status(settings.database.database)
        except ClusterError as exc:
            raise CliError(str(exc)) from exc
        info = {
            "mode": "managed",
            "running": st.running,
            "data_dir": str(st.data_dir),
            "port": st.port,
            "pid": st.pid,
            "postgres": st.postgres_version,
            "timescaledb": st.timescaledb_version,
            "license": st.timescaledb_license,
        }
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        click.echo(f"{key:>12}: {value}")


@db_group.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def db_psql(ctx: click.Context, psql_args: tuple[str, ...]) -> None:
    """Open psql on the telemetry database (extra arguments go to psql)."""
    settings = _settings(ctx)
    dsn = database_dsn(settings)
    psql = shutil.which("psql")
    if psql is None:
        raise CliError("psql is not installed (Debian package postgresql-client)")
    os.execv(psql, [psql, dsn, *psql_args])
