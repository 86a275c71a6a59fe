"""`labctl rigs`: the live rig table (state, trainee, session, rate, heartbeat, clock, backlog)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from lab_controller import protocol as P
from lab_controller.cli._common import CliError, echo_json
from lab_controller.cli.controller import api_client, api_options
from lab_controller.controller import ApiError

_STATE_STYLE = {"idle": "green", "running": "bold cyan", "stopping": "yellow", "error": "red",
                "dead": "bold red"}


def _clock(offset: float | None, rtt: float | None) -> str:
    """Clock column: the offset when it is small enough to read, and its uncertainty (RTT/2)."""
    if offset is None or rtt is None:
        return "not synced"
    unc = f"±{500 * rtt:.1f} ms"
    if abs(offset) < 10.0:
        return f"{1000 * offset:+.1f} ms {unc}"
    return f"synced {unc}"  # a rig's monotonic clock: the offset itself means nothing to read


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s ago"


def rigs_table(rows: list[dict[str, Any]], controller: dict[str, Any] | None = None) -> Table:
    """A teacher-readable table of rig rows (api.rigs)."""
    title = f"{len(rows)} rigs"
    if controller:
        bad = controller.get("bad_input_total", 0)
        title += f" · {controller.get('rigs_alive', 0)} alive · bad input {bad}"
    t = Table(title=title, title_justify="left")
    for col in ("Rig", "State", "Trainee", "Session", "Rate", "Heard", "Clock", "Backlog"):
        t.add_column(col, justify="right" if col in ("Rate", "Backlog") else "left")
    for r in rows:
        state = r["state"] if r["alive"] else "dead"
        sess = r.get("session_state") or ""
        if sess and sess != state:
            state = f"{state} ({sess})"
        style = _STATE_STYLE.get(r["state"] if r["alive"] else "dead", "")
        rate = f"{r['rate_hz']:.0f} Hz"
        sid = (r.get("session_id") or "")[:8]
        t.add_row(r["rig_id"], f"[{style}]{state}[/]" if style else state,
                  r.get("trainee") or "", sid, rate, _ago(r.get("last_seen_s")),
                  _clock(r.get("clock_offset_s"), r.get("clock_rtt_s")),
                  str(r.get("backlog_chunks", 0)))
    return t


@click.command("rigs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.option("--watch", type=float, default=None, metavar="SECONDS",
              help="Refresh the table every SECONDS until Ctrl-C.")
@api_options
@click.pass_context
def rigs_command(ctx: click.Context, as_json: bool, watch: float | None, api_endpoint: str | None,
                 key_file: Path | None, server_key: Path | None, timeout: float) -> None:
    """Show every rig: state, trainee, session, sample rate, heartbeat, clock offset, backlog."""
    with api_client(ctx, api_endpoint, key_file, server_key, timeout) as client:
        try:
            data = client.request(P.ApiRigs()).data
        except ApiError as exc:
            raise CliError(str(exc)) from exc
        if as_json:
            echo_json(data)
            return
        console = Console()
        if watch is None:
            console.print(rigs_table(data["rigs"], data.get("controller")))
            return
        try:
            with Live(rigs_table(data["rigs"], data.get("controller")), console=console) as live:
                while True:
                    time.sleep(watch)
                    try:
                        data = client.request(P.ApiRigs()).data
                    except ApiError as exc:
                        raise CliError(str(exc)) from exc
                    live.update(rigs_table(data["rigs"], data.get("controller")))
        except KeyboardInterrupt:
            return
