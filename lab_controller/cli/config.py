"""`labctl config`: show the effective configuration."""

from __future__ import annotations

import click

from lab_controller.cli._common import CliError, echo_json, settings_from
from lab_controller.settings import ConfigFileError, masked_dump


@click.group("config")
def config_group() -> None:
    """Show the lab's configuration (environment LABCTL_*, labctl.toml, defaults)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective configuration; passwords and tokens are masked."""
    try:
        data = masked_dump(settings_from(ctx))
    except ConfigFileError as exc:
        raise CliError(str(exc)) from exc
    if as_json:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="labctl configuration", show_lines=False)
    table.add_column("setting")
    table.add_column("value")

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                walk(f"{prefix}.{key}" if prefix else key, value[key])
        else:
            table.add_row(prefix, "" if value is None else str(value))

    walk("", data)
    Console().print(table)
    click.echo("Set with LABCTL_<NAME> (nested: LABCTL_DATABASE__DSN) or a labctl.toml file.")
