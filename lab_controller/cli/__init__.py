"""`labctl`: the instructor's and technician's command line.

Each command group lives in its own module; this module only assembles them.
"""

from __future__ import annotations

import logging
import sys

import click

from lab_controller.cli._common import CliError
from lab_controller.cli.config import config_group
from lab_controller.cli.db import db_group

_GROUP_MODULES = (
    # (module, attribute) of groups/commands that are added when their module exists.
    ("lab_controller.cli.controller", "controller_group"),
    ("lab_controller.cli.rigs", "rigs_command"),
    ("lab_controller.cli.rig", "rig_group"),
    ("lab_controller.cli.session", "session_group"),
    ("lab_controller.cli.session", "class_group"),
    ("lab_controller.cli.keys", "keys_group"),
    ("lab_controller.cli.export", "export_group"),
    ("lab_controller.cli.dashboards", "dashboards_group"),
    ("lab_controller.cli.demo", "demo_command"),
    ("lab_controller.cli.competition", "competition_group"),
    ("lab_controller.cli.competition", "judge_group"),
    ("lab_controller.cli.workers", "workers_group"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="LABCTL_CONFIG_FILE",
    help="TOML configuration file (default: ./labctl.toml if present).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, config_file: str | None) -> None:
    """Run a VR/simulation training lab: rigs, sessions, scoring, telemetry, dashboards."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file


cli.add_command(config_group)
cli.add_command(db_group)


def _add_optional_groups() -> None:
    import importlib

    for module_name, attr in _GROUP_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that group has not been written yet
            raise
        cli.add_command(getattr(module, attr))


_add_optional_groups()


def main() -> None:
    """Entry point: turn expected failures into one readable line and exit status 1."""
    try:
        cli.main(standalone_mode=False)
    except CliError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
