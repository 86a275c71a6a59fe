"""`labctl session start|stop|abort|show|list` and `labctl class launch`."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from lab_controller import protocol as P
from lab_controller.cli._common import CliError, echo_json
from lab_controller.cli.controller import api_client, api_options
from lab_controller.controller import ApiError


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def _params(items: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs; values parsed as JSON when they can be (numbers, true, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--param {item!r}: expected key=value")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _call(ctx: click.Context, opts: dict[str, Any], msg: P.ApiRequest) -> P.ApiReply:
    with api_client(ctx, opts["api_endpoint"], opts["key_file"], opts["server_key"],
                    opts["timeout"]) as client:
        try:
            return client.request(msg)
        except ApiError as exc:
            raise CliError(f"{exc} ({exc.code})") from exc


def _print_session(row: dict[str, Any]) -> None:
    console = Console()
    t = Table(show_header=False, title=f"Session {row['session_id']}", title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    gaps = row.get("open_gaps") or []
    for label, value in (
        ("Rig", row["rig_id"]),
        ("Trainee", row.get("trainee") or "—"),
        ("Exercise", row.get("exercise_id") or "—"),
        ("State", f"{row['state']}" + (f" — {row['reason']}" if row.get("reason") else "")),
        ("Started", _when(row.get("started_at"))),
        ("Ended", _when(row.get("ended_at"))),
        ("Samples received", str(row.get("samples", 0))),
        ("Stored up to seq", str(row.get("durable_seq"))),
        ("Gaps", f"{row.get('gaps', 0)} detected, {len(gaps)} open"),
        ("Duplicates dropped", str(row.get("duplicates", 0))),
    ):
        t.add_row(label, value)
    console.print(t)
    events = row.get("events")
    if events:
        et = Table(title="Events", title_justify="left")
        for col in ("Time", "From", "To", "Why"):
            et.add_column(col)
        for e in events:
            et.add_row(_when(e["at"]), e["from"] or "", e["to"], e.get("reason") or "")
        console.print(et)


def _common(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")(f)
    return api_options(f)


@click.group("session")
def session_group() -> None:
    """Start, stop, abort and inspect one trainee's session on one rig."""


@session_group.command("start")
@click.option("--rig", "rig_id", required=True, help="Rig id, e.g. rig-07.")
@click.option("--exercise", "exercise_id", required=True, help="Exercise id.")
@click.option("--trainee", required=True, help="Trainee pseudonym (never a real name).")
@click.option("--rubric-version", default="", help="Rubric version to score with.")
@click.option("--duration", type=float, default=None, help="Seconds; the rig ends by itself.")
@click.option("--param", "params", multiple=True, help="key=value for the rig driver.")
@_common
@click.pass_context
def session_start(ctx: click.Context, /, rig_id: str, exercise_id: str, trainee: str,
                  rubric_version: str, duration: float | None, params: tuple[str, ...],
                  as_json: bool, **opts: Any) -> None:
    """Start EXERCISE for TRAINEE on RIG."""
    reply = _call(ctx, opts, P.ApiSessionStart(
        rig_id=rig_id, exercise_id=exercise_id, trainee=trainee, rubric_version=rubric_version,
        duration_s=duration, params=_params(params)))
    row = reply.data["session"]
    if as_json:
        echo_json(reply.data)
    else:
        click.echo(f"started {row['exercise_id']} for {row['trainee']} on {row['rig_id']}: "
                   f"session {row['session_id']} ({row['state']})")


def _stop(ctx: click.Context, session_id: str, reason: str, abort: bool, as_json: bool,
          opts: dict[str, Any]) -> None:
    cls = P.ApiSessionAbort if abort else P.ApiSessionStop
    reply = _call(ctx, opts, cls(session_id=session_id, reason=reason))
    if as_json:
        echo_json(reply.data)
        return
    row = reply.data["session"]
    verb = "aborted" if abort else "stopping"
    note = reply.data.get("note")
    click.echo(f"{verb} session {row['session_id']} on {row['rig_id']}: now {row['state']}"
               + (f" ({note})" if note else ""))


@session_group.command("stop")
@click.argument("session_id")
@click.option("--reason", default="", help="Why (kept with the session's events).")
@_common
@click.pass_context
def session_stop(ctx: click.Context, /, session_id: str, reason: str, as_json: bool,
                 **opts: Any) -> None:
    """End SESSION_ID normally; it finishes when all its samples are stored."""
    _stop(ctx, session_id, reason, False, as_json, opts)


@session_group.command("abort")
@click.argument("session_id")
@click.option("--reason", default="", help="Why (kept with the session's events).")
@_common
@click.pass_context
def session_abort(ctx: click.Context, /, session_id: str, reason: str, as_json: bool,
                  **opts: Any) -> None:
    """End SESSION_ID at once (its data so far is still kept)."""
    _stop(ctx, session_id, reason, True, as_json, opts)


@session_group.command("show")
@click.argument("session_id")
@_common
@click.pass_context
def session_show(ctx: click.Context, /, session_id: str, as_json: bool, **opts: Any) -> None:
    """Everything about SESSION_ID: state, data completeness, event history."""
    reply = _call(ctx, opts, P.ApiSessionShow(session_id=session_id))
    if as_json:
        echo_json(reply.data)
    else:
        _print_session(reply.data["session"])


@session_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include ended sessions.")
@_common
@click.pass_context
def session_list(ctx: click.Context, /, show_all: bool, as_json: bool, **opts: Any) -> None:
    """List sessions (active ones unless --all)."""
    reply = _call(ctx, opts, P.ApiSessions(active_only=not show_all))
    if as_json:
        echo_json(reply.data)
        return
    t = Table(title=f"{len(reply.data['sessions'])} sessions", title_justify="left")
    for col in ("Session", "Rig", "Trainee", "Exercise", "State", "Samples", "Gaps"):
        t.add_column(col)
    for row in reply.data["sessions"]:
        t.add_row(row["session_id"][:8], row["rig_id"], row.get("trainee") or "",
                  row.get("exercise_id") or "", row["state"], str(row.get("samples", 0)),
                  str(row.get("gaps", 0)))
    Console().print(t)


def _split(values: tuple[str, ...]) -> list[str]:
    """Accept `--rigs a,b --rigs c` and `--rigs "a b"`."""
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.replace(",", " ").split() if x)
    return out


@click.group("class")
def class_group() -> None:
    """Run the same exercise for a whole class at once."""


@class_group.command("launch")
@click.option("--exercise", "exercise_id", required=True, help="Exercise id.")
@click.option("--rigs", "rigs", multiple=True,
              help="Rig ids (comma or space separated); omit for all idle rigs.")
@click.option("--trainees", "trainees", multiple=True,
              help="Trainee pseudonyms in the same order as --rigs.")
@click.option("--rubric-version", default="", help="Rubric version to score with.")
@click.option("--duration", type=float, default=None, help="Seconds; rigs end by themselves.")
@click.option("--param", "params", multiple=True, help="key=value for the rig drivers.")
@_common
@click.pass_context
def class_launch(ctx: click.Context, /, exercise_id: str, rigs: tuple[str, ...],
                 trainees: tuple[str, ...], rubric_version: str, duration: float | None,
                 params: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Health-check the rigs, start EXERCISE on the healthy ones together, report per rig."""
    rig_list = _split(rigs) or None
    reply = _call(ctx, opts, P.ApiClassLaunch(
        exercise_id=exercise_id, rigs=rig_list, trainees=_split(trainees),
        rubric_version=rubric_version, duration_s=duration, params=_params(params)))
    data = reply.data
    if as_json:
        echo_json(data)
        return
    results = data["results"]
    t = Table(title=f"Class launch of {exercise_id}: {data['started']} of {len(results)} started"
              f" (start spread {1000 * data.get('start_spread_s', 0.0):.0f} ms)",
              title_justify="left")
    for col in ("Rig", "Trainee", "Result", "Session", "Why"):
        t.add_column(col)
    for r in results:
        result = "[green]started[/]" if r["ok"] else "[bold red]not started[/]"
        t.add_row(r["rig_id"], r.get("trainee") or "", result, (r.get("session_id") or "")[:8],
                  "" if r["ok"] else r.get("reason", ""))
    Console().print(t)
