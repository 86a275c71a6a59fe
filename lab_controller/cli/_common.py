"""Helpers shared by the `labctl` command modules."""

from __future__ import annotations

import json
from typing import Any

import click

from lab_controller.settings import LabSettings, load_settings


class CliError(Exception):
    """An expected failure: printed as one line, no traceback."""


def settings_from(ctx: click.Context) -> LabSettings:
    """The effective settings for this invocation (env, TOML file, defaults)."""
    obj = ctx.find_object(dict) or {}
    cached = obj.get("settings")
    if isinstance(cached, LabSettings):
        return cached
    settings = load_settings(obj.get("config_file"))
    obj["settings"] = settings
    return settings


def echo_json(value: Any) -> None:
    """Print `value` as indented JSON (for `--json` output)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))
