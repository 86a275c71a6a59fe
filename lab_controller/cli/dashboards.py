"""`labctl dashboards`: build, provision and check the Grafana dashboards.

* `build` writes dashboard JSON + provisioning YAML for a Grafana container (deploy/) and prints
  an outline (dashboard → panels → query names), since no screenshot can be taken here;
* `provision` creates/updates the folder, data source and dashboards over the HTTP API;
* `check` runs every panel's SQL, expanded as Grafana would, against a live database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from dashboards import all_dashboards
from dashboards.check import Column, QueryCheck, Result, SqlRunner, check_dashboard
from dashboards.files import outline, write_all
from dashboards.macros import MacroError, TimeRange, parse_interval
from dashboards.provision import DataSourceConfig, ProvisionError, connect, provision
from lab_controller.cli._common import CliError, settings_from
from lab_controller.settings import ConfigFileError, LabSettings

_RELATIVE = re.compile(r"^now(?:-(\w+))?$")
MAX_DATA_POINTS = 1000
"""Points per panel for the default `$__interval` (Grafana uses the panel's pixel width)."""


def _settings(ctx: click.Context) -> LabSettings:
    try:
        return settings_from(ctx)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from exc


def _datasource_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options describing how Grafana reaches the database (shared by build and provision)."""
    defaults = DataSourceConfig()
    for option in reversed(
        [
            click.option("--db-url", default=defaults.url, show_default=True,
                         help="host:port of TimescaleDB as Grafana sees it"),
            click.option("--db-name", default=defaults.database, show_default=True),
            click.option("--db-user", default=defaults.user, show_default=True,
                         help="the read-only dashboard role"),
            click.option("--sslmode", default=defaults.sslmode, show_default=True,
                         type=click.Choice(["disable", "require", "verify-ca", "verify-full"])),
        ]
    ):
        func = option(func)
    return func


def _config(db_url: str, db_name: str, db_user: str, sslmode: Any) -> DataSourceConfig:
    return DataSourceConfig(url=db_url, database=db_name, user=db_user, sslmode=sslmode)


@click.group("dashboards")
def dashboards_group() -> None:
    """Grafana dashboards as code: build files, provision over HTTP, check every query."""


@dashboards_group.command("build")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="output folder (default: the configured dashboards_dir)")
@_datasource_options
@click.pass_context
def build_command(ctx: click.Context, out_dir: Path | None, db_url: str, db_name: str,
                  db_user: str, sslmode: str) -> None:
    """Write dashboard JSON (sorted keys) and provisioning YAML; print the outline."""
    out = out_dir or _settings(ctx).dashboards_dir
    models = all_dashboards()
    written = write_all(out, models, _config(db_url, db_name, db_user, sslmode))
    click.echo(outline(models))
    click.echo(f"\nwrote {len(written)} files to {out}")


@dashboards_group.command("provision")
@click.option("--url", envvar="GRAFANA_URL", help="Grafana base URL (default: settings)")
@click.option("--token", envvar="GRAFANA_TOKEN",
              help="service-account token with folder, data source and dashboard rights")
@click.option("--db-password", envvar="GRAFANA_DB_PASSWORD",
              help="password of the dashboard role (sent when the data source is written)")
@_datasource_options
@click.pass_context
def provision_command(ctx: click.Context, url: str | None, token: str | None,
                      db_password: str | None, db_url: str, db_name: str, db_user: str,
                      sslmode: str) -> None:
    """Create or update folder, data source and dashboards; print what changed."""
    settings = _settings(ctx)
    url = url or settings.grafana_url
    if not url:
        raise CliError("no Grafana URL: pass --url or set GRAFANA_URL / grafana_url")
    if token is None and settings.grafana_token is not None:
        token = settings.grafana_token.get_secret_value()
    try:
        changes = provision(connect(url, token), all_dashboards(),
                            _config(db_url, db_name, db_user, sslmode), db_password)
    except ProvisionError as exc:
        raise CliError(f"{url}: {exc}") from exc
    for change in changes:
        click.echo(str(change))
    counts = {a: sum(c.action == a for c in changes) for a in ("created", "updated", "unchanged")}
    click.echo(", ".join(f"{n} {a}" for a, n in counts.items()))


def parse_moment(text: str, now: datetime) -> datetime:
    """`now`, `now-15m` (Grafana style) or an ISO 8601 time (UTC if no zone given)."""
    relative = _RELATIVE.match(text)
    if relative:
        return now - (parse_interval(relative.group(1), now) if relative.group(1) else timedelta())
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is neither now[-N<unit>] nor an ISO time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _telemetry_runner(dsn: str) -> SqlRunner:
    """SQL through telemetry (the only package allowed to talk to PostgreSQL)."""
    try:
        from telemetry.queries import run_sql
    except ImportError as exc:
        raise CliError(
            "check needs telemetry.queries.run_sql (requested in docs/schema-requests.md)"
        ) from exc

    def run(sql: str) -> Result:
        columns, rows = run_sql(dsn, sql)
        return Result([Column(name, type_name) for name, type_name in columns], rows)

    return run


@dashboards_group.command("check")
@click.option("--dsn", help="database to query (default: the configured one)")
@click.option("--from", "from_", default="now-6h", show_default=True,
              help="range start: now-<n><unit> or ISO 8601")
@click.option("--to", "to", default="now", show_default=True)
@click.option("--interval", help="$__interval (default: range / 1000, at least 1s)")
@click.option("--var", "pins", multiple=True, metavar="NAME=VALUE",
              help="pin a variable (repeat for several values), like var-NAME in a URL")
@click.option("--dashboard", "uids", multiple=True, help="only this dashboard uid (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per query")
@click.pass_context
def check_command(ctx: click.Context, dsn: str | None, from_: str, to: str,
                  interval: str | None, pins: tuple[str, ...], uids: tuple[str, ...],
                  as_json: bool) -> None:
    """Run every panel's expanded SQL against a live database; exit 1 on any problem."""
    now = datetime.now(UTC)
    start, end = parse_moment(from_, now), parse_moment(to, now)
    try:
        step = parse_interval(interval, now) if interval else max(
            timedelta(seconds=1), (end - start) / MAX_DATA_POINTS)
        rng = TimeRange(start, end, step)
    except (MacroError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    selections: dict[str, list[str]] = {}
    for pin in pins:
        name, sep, value = pin.partition("=")
        if not sep:
            raise click.BadParameter(f"{pin!r} is not NAME=VALUE", param_hint="--var")
        selections.setdefault(name, []).append(value)
    pinned = {k: v[0] if len(v) == 1 else v for k, v in selections.items()}

    obj = ctx.find_object(dict) or {}
    run: SqlRunner | None = obj.get("sql_runner")  # tests and embedders pass their own
    if run is None:
        if dsn is None:
            from lab_controller.cli.db import database_dsn

            dsn = database_dsn(_settings(ctx))
        run = _telemetry_runner(dsn)

    try:  # one probe first: an unreachable database is one line, not one per query
        run("SELECT 1 AS probe")
    except Exception as exc:
        raise CliError(f"cannot query the database: {exc}") from exc

    models = [m for m in all_dashboards() if not uids or m["uid"] in uids]
    if uids and len(models) != len(set(uids)):
        raise CliError(f"unknown dashboard uid among {', '.join(uids)}")
    checks: list[QueryCheck] = []
    for model in models:
        checks.extend(check_dashboard(model, run, rng, pinned))
    for check in checks:
        if as_json:
            click.echo(json.dumps({
                "dashboard": check.dashboard, "where": check.where, "query": check.query,
                "rows": check.row_count, "columns": [c.name for c in check.columns],
                "problems": check.problems,
            }, sort_keys=True))
        else:
            click.echo(str(check))
    failed = [c for c in checks if not c.ok]
    if not as_json:
        click.echo(f"{len(checks)} queries, {len(failed)} with problems "
                   f"({rng.start:%Y-%m-%dT%H:%M:%SZ} to {rng.end:%Y-%m-%dT%H:%M:%SZ})")
    if failed:
        raise CliError(f"{len(failed)} of {len(checks)} queries have problems")
