"""`labctl db`: the telemetry database (managed cluster or a configured DSN)."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta

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


# ---- schema, roles, retention (telemetry owner) ------------------------------------------------
def _dsn_for_admin(ctx: click.Context) -> str:
    """The database DSN for schema work; the managed cluster is started if it is not running."""
    return database_dsn(_settings(ctx), start=True)


@db_group.command("migrate")
@click.option("--status", "show_status", is_flag=True, help="List migrations and whether applied.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def db_migrate(ctx: click.Context, show_status: bool, as_json: bool) -> None:
    """Apply the telemetry schema migrations in order (safe to run again).

    Where TimescaleDB is licensed (timescaledb.license = timescale) this also installs the
    retention/compression policies and the continuous aggregate; on the Apache edition use
    `labctl db retention apply` from a timer.
    """
    from telemetry import migrate as mig
    from telemetry import policies

    dsn = _dsn_for_admin(ctx)
    try:
        if show_status:
            rows = mig.status(dsn)
            if as_json:
                echo_json([vars(r) for r in rows])
                return
            for r in rows:
                when = r.applied_at.isoformat(timespec="seconds") if r.applied_at else "pending"
                flag = "" if r.checksum_ok else "  (CHANGED since applied!)"
                click.echo(f"{r.version:04d}_{r.name:<24} {when}{flag}")
            return
        applied = mig.migrate(dsn)
        stmts = policies.apply_policies(dsn)
    except (mig.MigrationError, OSError) as exc:
        raise CliError(str(exc)) from exc
    if as_json:
        echo_json({"applied": [f"{m.version:04d}_{m.name}" for m in applied], "policies": stmts})
        return
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    else:
        click.echo("schema up to date")
    if stmts:
        click.echo(f"installed {len(stmts)} TimescaleDB policy statements (licensed edition)")


@db_group.command("roles")
@click.option(
    "--dashboard-password",
    envvar="LABCTL_DASHBOARD_DB_PASSWORD",
    default=None,
    help="Password of the read-only dashboard role (env LABCTL_DASHBOARD_DB_PASSWORD).",
)
@click.option(
    "--writer-password",
    envvar="LABCTL_WRITER_DB_PASSWORD",
    default=None,
    help="Password of the ingest writer role (env LABCTL_WRITER_DB_PASSWORD).",
)
@click.pass_context
def db_roles(ctx: click.Context, dashboard_password: str | None, writer_password: str | None) -> None:
    """Create/update the writer role and the read-only dashboard role (no access to real names)."""
    from telemetry import schema
    from telemetry.roles import create_roles

    dsn = _dsn_for_admin(ctx)
    try:
        report = create_roles(dsn, dashboard_password=dashboard_password, writer_password=writer_password)
    except Exception as exc:  # psycopg errors stay inside telemetry's types; show one line
        raise CliError(f"cannot create roles: {exc}") from exc
    for role in (schema.DASHBOARD_ROLE, schema.WRITER_ROLE):
        verb = "created" if role in report.created else "updated"
        click.echo(f"{verb} role {role}")


@db_group.group("retention")
def retention_group() -> None:
    """Raw-data retention and compression per hypertable."""


def _parse_interval(text: str) -> timedelta | None:
    """'90d', '12h', '30m', '2w' or 'forever'/'none'."""
    t = text.strip().lower()
    if t in ("forever", "none", "never", "off"):
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
    if len(t) < 2 or t[-1] not in units or not t[:-1].isdigit():
        raise click.BadParameter(f"{text!r}: use a number with s, m, h, d or w (e.g. 180d), or 'forever'")
    return timedelta(seconds=int(t[:-1]) * units[t[-1]])


def _fmt(td: timedelta | None) -> str:
    if td is None:
        return "forever"
    days, rest = divmod(int(td.total_seconds()), 86_400)
    return f"{days}d" if rest == 0 else f"{int(td.total_seconds())}s"


@retention_group.command("show")
@click.pass_context
def retention_show(ctx: click.Context) -> None:
    """Show retention and compression per hypertable, and the edition in use."""
    from telemetry import policies

    dsn = _dsn_for_admin(ctx)
    lic = policies.license_of(dsn)
    click.echo(f"timescaledb.license: {lic}")
    for r in policies.rules(dsn):
        click.echo(f"{r.hypertable:<22} keep {_fmt(r.keep):<9} compress after {_fmt(r.compress_after)}")


@retention_group.command("set")
@click.argument("hypertable")
@click.option("--keep", help="Raw data kept this long (e.g. 180d) or 'forever'.")
@click.option("--compress-after", help="Compress chunks older than this (licensed edition).")
@click.pass_context
def retention_set(ctx: click.Context, hypertable: str, keep: str | None, compress_after: str | None) -> None:
    """Change a hypertable's retention/compression."""
    from telemetry import policies

    dsn = _dsn_for_admin(ctx)
    try:
        rule = policies.set_rule(
            dsn,
            hypertable,
            keep=_parse_interval(keep) if keep is not None else "unchanged",
            compress_after=(_parse_interval(compress_after) if compress_after is not None else "unchanged"),
        )
        stmts = policies.apply_policies(dsn)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    click.echo(f"{rule.hypertable}: keep {_fmt(rule.keep)}, compress after {_fmt(rule.compress_after)}")
    if stmts:
        click.echo("licensed edition: policies updated")


@retention_group.command("apply")
@click.option("--dry-run", is_flag=True, help="List the chunks that would be dropped.")
@click.pass_context
def retention_apply(ctx: click.Context, dry_run: bool) -> None:
    """Drop chunks older than each hypertable's retention (drop_chunks; run it from a timer)."""
    from telemetry import policies

    dsn = _dsn_for_admin(ctx)
    for d in policies.drop_old_chunks(dsn, dry_run=dry_run):
        verb = "would drop" if dry_run else "dropped"
        click.echo(
            f"{d.hypertable}: {verb} {len(d.chunks)} chunk(s) older than "
            f"{d.older_than.isoformat(timespec='seconds')}"
        )
