"""`labctl competition ...` and `labctl judge ...`: competitions across sites (docs/competitions.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from lab_controller.cli._common import CliError, echo_json, settings_from
from lab_controller.cli.db import database_dsn


def _svc(ctx: click.Context, actor: str = "") -> Any:
    from lab_controller.competition.service import Competitions

    return Competitions(database_dsn(settings_from(ctx)), actor=actor)


def _run(fn: Any, *args: Any, **kw: Any) -> Any:
    from lab_controller.competition.coordination import CoordinationError
    from lab_controller.competition.service import CompetitionError
    from lab_controller.competition.signing import SignatureError

    try:
        return fn(*args, **kw)
    except (CompetitionError, CoordinationError, SignatureError) as exc:
        raise CliError(str(exc)) from exc


@click.group("competition")
def competition_group() -> None:
    """Competitions: events, heats across sites, referee marks, appeals, signed results."""


@competition_group.command("create")
@click.argument("competition_id")
@click.option("--name", default="")
@click.option("--aspect", "aspects", multiple=True, help="A judgement aspect (repeat).")
@click.option("--judgement-weight", type=float, default=0.2, show_default=True)
@click.option("--event", "events", multiple=True, metavar="EVENT=EXERCISE[:DURATION_S]",
              help="An event: its id, exercise and duration (repeat).")
@click.option("--competitor", "competitors", multiple=True, metavar="ID:BIB:SITE",
              help="A competitor (pseudonymous id), bib number and site (repeat).")
@click.option("--heat", "heats", multiple=True, metavar="HEAT=EVENT", help="A heat (repeat).")
@click.option("--actor", default="", help="Who does this (audit trail).")
@click.pass_context
def create_cmd(ctx: click.Context, competition_id: str, name: str, aspects: tuple[str, ...],
               judgement_weight: float, events: tuple[str, ...], competitors: tuple[str, ...],
               heats: tuple[str, ...], actor: str) -> None:
    """Create a competition (draft) with its events, competitors and heats."""
    svc = _svc(ctx, actor)
    _run(svc.create, competition_id, name,
         {"aspects": list(aspects), "judgement_weight": judgement_weight})
    for spec in events:
        event_id, _, rest = spec.partition("=")
        exercise, _, dur = rest.partition(":")
        _run(svc.add_event, competition_id, event_id, exercise,
             duration_s=float(dur) if dur else None)
    for spec in competitors:
        try:
            cid, bib, site = spec.split(":")
            _run(svc.add_competitor, competition_id, cid, int(bib), site)
        except ValueError as exc:
            raise CliError(f"--competitor {spec!r}: expected ID:BIB:SITE") from exc
    for spec in heats:
        heat_id, _, event_id = spec.partition("=")
        _run(svc.add_heat, competition_id, heat_id, event_id)
    click.echo(f"competition {competition_id} created (draft)")


@competition_group.command("open")
@click.argument("competition_id")
@click.option("--actor", default="")
@click.pass_context
def open_cmd(ctx: click.Context, competition_id: str, actor: str) -> None:
    """Freeze every event's exercise + rubric version (with digests) and open."""
    digests = _run(_svc(ctx, actor).open, competition_id)
    for event_id, sha in digests.items():
        click.echo(f"{event_id}: rubric sha256 {sha}")


@competition_group.group("heat")
def heat_group() -> None:
    """Heats: coordinated start across sites, scoring."""


@heat_group.command("start")
@click.argument("competition_id")
@click.argument("heat_id")
@click.option("--site", "sites", multiple=True, required=True, metavar="SITE=ENDPOINT",
              help="A site's coordination agent endpoint (repeat).")
@click.option("--entry", "entries", multiple=True, required=True,
              metavar="COMPETITOR=SITE/RIG", help="Who competes on which rig (repeat).")
@click.option("--tolerance-ms", type=float, default=100.0, show_default=True)
@click.option("--lead-s", type=float, default=1.5, show_default=True)
@click.option("--actor", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def heat_start_cmd(ctx: click.Context, competition_id: str, heat_id: str, sites: tuple[str, ...],
                   entries: tuple[str, ...], tolerance_ms: float, lead_s: float, actor: str,
                   as_json: bool) -> None:
    """Check every site's rigs and clock, agree a start time, start all rigs together."""
    from lab_controller.competition.coordination import Coordinator
    from lab_controller.competition.service import start_heat

    endpoints = dict(s.split("=", 1) for s in sites)
    plan = {}
    for e in entries:
        comp, _, where = e.partition("=")
        site, _, rig = where.partition("/")
        plan[comp] = (site, rig)
    coord = Coordinator(endpoints)
    try:
        report = _run(start_heat, _svc(ctx, actor), coord, competition_id, heat_id, plan,
                      tolerance_s=tolerance_ms / 1000, lead_s=lead_s)
    finally:
        coord.close()
    if as_json:
        echo_json({"start_at": report.start_at, "spread_s": report.spread_s,
                   "entries": report.entries, "sites": report.sites})
        return
    spread = report.spread_s
    click.echo(f"heat {heat_id}: {report.state}; spread "
               f"{'-' if spread is None else f'{1000 * spread:.1f} ms'} "
               f"(tolerance {tolerance_ms:.0f} ms)")
    for e in report.entries:
        off = e["start_offset_ms"]
        click.echo(f"  {e['competitor_id']:8} {e['site_id']:10} {e['rig_id']:12} "
                   f"{e['start_state']:8} {'' if off is None else f'{off:+.1f} ms'} "
                   f"{e['reason']}")


@heat_group.command("score")
@click.argument("competition_id")
@click.argument("heat_id")
@click.pass_context
def heat_score_cmd(ctx: click.Context, competition_id: str, heat_id: str) -> None:
    """Official referee marks from the stored samples of the heat's finished sessions."""
    ids = _run(_svc(ctx, "referee").score_heat, competition_id, heat_id)
    click.echo(f"{len(ids)} marks stored: {ids}")


@competition_group.command("leaderboard")
@click.argument("competition_id")
@click.argument("event_id")
@click.option("--heat", "heat_id", default=None)
@click.option("--watch", type=float, default=0.0, help="Refresh every N seconds.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def leaderboard_cmd(ctx: click.Context, competition_id: str, event_id: str,
                    heat_id: str | None, watch: float, as_json: bool) -> None:
    """Live standings of an event (or one heat): rank, bib, total, measured, judged."""
    svc = _svc(ctx)
    while True:
        board = _run(svc.leaderboard, competition_id, event_id, heat_id)
        if as_json:
            echo_json([s.to_dict() for s in board])
        else:
            click.echo(f"{'rank':>4} {'bib':>4} {'competitor':10} {'site':10} {'total':>7} "
                       f"{'measured':>8} {'judged':>7}  note")
            for s in board:
                def f(x: float | None) -> str:
                    return "-" if x is None else f"{x:.2f}"

                note = s.reason if s.total is None else ("judge marks pending" if not s.complete
                                                         else "")
                if s.needs_review:
                    note += " judges differ by >1: review"
                click.echo(f"{s.rank or '-':>4} {s.bib:>4} {s.competitor_id:10} {s.site_id:10} "
                           f"{f(s.total):>7} {f(s.measurement):>8} {f(s.judgement):>7}  {note}")
        if watch <= 0:
            return
        time.sleep(watch)


@competition_group.command("appeal")
@click.argument("competition_id")
@click.argument("event_id")
@click.argument("competitor_id")
@click.option("--rubric", "rubric_file", type=click.Path(exists=True, dir_okay=False,
                                                          path_type=Path), required=True,
              help="The rubric document (JSON) to re-score with.")
@click.option("--reason", default="")
@click.option("--actor", default="")
@click.pass_context
def appeal_cmd(ctx: click.Context, competition_id: str, event_id: str, competitor_id: str,
               rubric_file: Path, reason: str, actor: str) -> None:
    """Re-score a competitor from the stored data; show the difference (the mark stays)."""
    rubric = json.loads(rubric_file.read_text())
    out = _run(_svc(ctx, actor).appeal, competition_id, event_id, competitor_id, rubric,
               reason=reason)
    echo_json(out)


@competition_group.command("recompute")
@click.argument("mark_id", type=int)
@click.pass_context
def recompute_cmd(ctx: click.Context, mark_id: int) -> None:
    """Re-compute a stored mark from the stored samples; exit 1 unless bit-identical."""
    same, diffs = _run(_svc(ctx).recompute, mark_id)
    if not same:
        raise CliError(f"mark {mark_id} re-computes differently: {', '.join(diffs)}")
    click.echo(f"mark {mark_id}: identical (data, rubric, kernel digests and result)")


@competition_group.command("keygen")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
def keygen_cmd(key_file: Path) -> None:
    """Write a new HMAC-SHA256 signing key (mode 0600)."""
    from lab_controller.competition.signing import generate_key

    try:
        key = generate_key(key_file)
    except FileExistsError as exc:
        raise CliError(f"{key_file} exists; not overwritten") from exc
    click.echo(f"key {key.key_id} written to {key_file}")


@competition_group.command("publish")
@click.argument("competition_id")
@click.argument("event_id")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True)
@click.option("--actor", default="")
@click.pass_context
def publish_cmd(ctx: click.Context, competition_id: str, event_id: str, key_file: Path,
                actor: str) -> None:
    """Freeze and sign the event's result record."""
    from lab_controller.competition.signing import load_key

    key = _run(load_key, key_file)
    sig = _run(_svc(ctx, actor).publish, competition_id, event_id, key)
    click.echo(f"{event_id} published; hmac-sha256 {sig} (key {key.key_id})")


@competition_group.command("verify")
@click.argument("competition_id")
@click.argument("event_id")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True)
@click.option("--recompute", is_flag=True, help="Also re-compute every mark from the samples.")
@click.pass_context
def verify_cmd(ctx: click.Context, competition_id: str, event_id: str, key_file: Path,
               recompute: bool) -> None:
    """Check the signature, the record against the database, optionally every mark."""
    from lab_controller.competition.signing import load_key

    v = _run(_svc(ctx).verify, competition_id, event_id, _run(load_key, key_file), recompute)
    if not v.ok:
        raise CliError("verification FAILED: " + "; ".join(v.mismatches))
    click.echo(f"{event_id}: signature valid, record matches the database"
               + (f", {v.marks_recomputed} marks re-computed identically" if recompute else ""))


@competition_group.command("site")
@click.option("--site-id", default=None, help="Default: the configured site_id.")
@click.option("--bind", default="tcp://*:5590", show_default=True)
@click.option("--api", "api_endpoint", default=None,
              help="The controller's instructor API (default: from the settings).")
@click.pass_context
def site_cmd(ctx: click.Context, site_id: str | None, bind: str,
             api_endpoint: str | None) -> None:
    """Run this site's coordination agent next to its controller (until Ctrl-C)."""
    from lab_controller.competition.coordination import SiteAgent

    settings = settings_from(ctx)
    site_id = site_id or settings.site_id
    api_endpoint = api_endpoint or settings.controller.api_endpoint
    agent = SiteAgent(site_id, bind, api_endpoint).start()
    click.echo(f"site {site_id}: coordination agent on {agent.endpoint} → {api_endpoint}")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()


@click.group("judge")
def judge_group() -> None:
    """Judges' marks (each judge independently, 0-3 per aspect)."""


@judge_group.command("mark")
@click.argument("competition_id")
@click.argument("event_id")
@click.argument("competitor_id")
@click.argument("aspect")
@click.argument("mark", type=click.IntRange(0, 3))
@click.option("--judge", "judge_id", required=True, help="The judge's id.")
@click.pass_context
def judge_mark_cmd(ctx: click.Context, competition_id: str, event_id: str, competitor_id: str,
                   aspect: str, mark: int, judge_id: str) -> None:
    """Enter one judge's mark for one aspect of a competitor's performance."""
    _run(_svc(ctx, judge_id).judge_mark, competition_id, event_id, competitor_id, aspect,
         judge_id, mark)
    click.echo(f"{judge_id}: {competitor_id} {aspect} = {mark}")
