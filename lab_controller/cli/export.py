"""`labctl export`: a session's full-rate data (CSV or Parquet) and a trainee's training record."""

from __future__ import annotations

import uuid
from pathlib import Path

import click

from lab_controller.cli._common import CliError, settings_from
from lab_controller.cli.db import database_dsn


@click.group("export")
def export_group() -> None:
    """Export stored data: sessions at full rate, trainees' training records."""


@export_group.command("session")
@click.argument("session_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for the files.",
)
@click.pass_context
def export_session_cmd(ctx: click.Context, session_id: str, fmt: str, out_dir: Path) -> None:
    """Write poses (one row per frame), score windows, parameters, cues, events and the result."""
    from telemetry.export import ExportError, export_session

    try:
        sid = uuid.UUID(session_id)
    except ValueError as exc:
        raise CliError(f"{session_id!r} is not a session id (a UUID)") from exc
    dsn = database_dsn(settings_from(ctx))
    try:
        files = export_session(dsn, sid, out_dir, fmt)
    except ExportError as exc:
        raise CliError(str(exc)) from exc
    for f in files:
        click.echo(f"{f.path}  ({f.rows} rows)")


@export_group.command("trainee")
@click.argument("trainee_id")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: trainee-<id>.<format>).")  # fmt: skip
@click.option("--with-identity", is_flag=True, help="Include the real name and national id.")
@click.pass_context
def export_trainee_cmd(
    ctx: click.Context, trainee_id: str, fmt: str, out_path: Path | None, with_identity: bool
) -> None:
    """Write a trainee's training record: sessions, rubric versions, scores, levels, breakdowns."""
    from telemetry.export import ExportError, export_trainee

    dsn = database_dsn(settings_from(ctx))
    path = out_path or Path(f"trainee-{trainee_id}.{fmt}")
    try:
        f = export_trainee(dsn, trainee_id, path, fmt, with_identity=with_identity)
    except ExportError as exc:
        raise CliError(str(exc)) from exc
    click.echo(f"{f.path}  ({f.rows} sessions)")
