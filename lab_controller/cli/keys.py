"""`labctl keys generate`: CurveZMQ key pairs for the controller, rigs and instructors."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from lab_controller.cli._common import CliError, echo_json
from lab_controller.controller import SecurityError, generate_keypair
from lab_controller.controller.security import INSTRUCTOR_DOMAIN, RIG_DOMAIN, load_public_key


@click.group("keys")
def keys_group() -> None:
    """CurveZMQ keys: generate key pairs and fill the controller's allow-list."""


@keys_group.command("generate")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Where to write NAME.key(_secret).")
@click.option("--allow", type=click.Choice(["rig", "instructor"]), default=None,
              help="Also copy the public key into the allow-list as a rig or an instructor.")
@click.option("--allow-list", "allow_list", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Allow-list directory (controller.curve_allowed_keys_dir).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def generate(name: str, directory: Path, allow: str | None, allow_list: Path | None,
             as_json: bool) -> None:
    """Write NAME.key (public, shareable) and NAME.key_secret (private, mode 0600).

    NAME is the identity: for a rig it must be its rig id (the controller checks HELLO's rig_id
    against it).
    """
    if allow and allow_list is None:
        raise CliError("--allow needs --allow-list DIR")
    try:
        public, secret = generate_keypair(directory, name)
    except SecurityError as exc:
        raise CliError(str(exc)) from exc
    allowed_path = None
    if allow and allow_list is not None:
        sub = allow_list / (RIG_DOMAIN if allow == "rig" else INSTRUCTOR_DOMAIN)
        sub.mkdir(parents=True, exist_ok=True)
        allowed_path = sub / public.name
        shutil.copyfile(public, allowed_path)
    key = load_public_key(public).decode()
    if as_json:
        echo_json({"name": name, "public_key": key, "public_file": str(public),
                   "secret_file": str(secret),
                   "allowed_file": str(allowed_path) if allowed_path else None})
        return
    click.echo(f"public key {key}")
    click.echo(f"wrote {public} and {secret} (keep the secret file private)")
    if allowed_path:
        click.echo(f"allowed as {allow}: {allowed_path}")
