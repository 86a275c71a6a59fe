"""`labctl rig`: the rig side — simulated fleets, recording a live stream, replaying a file."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click

from lab_controller.cli._common import CliError, settings_from


def _controller(ctx: click.Context, endpoint: str | None) -> str:
    return endpoint or settings_from(ctx).controller.control_endpoint


def _trackers(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if "tool" not in names:
        raise CliError("--trackers must include 'tool'")
    return names


def _wait_for_signal(seconds: float | None, healthy: Any = None) -> None:
    """Block until SIGINT/SIGTERM (or ``seconds``), so workers are always stopped cleanly;
    return early (raising CliError) when ``healthy()`` says a worker died."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    end = math.inf if seconds is None else time.monotonic() + seconds
    while not done.wait(min(0.5, max(0.0, end - time.monotonic()))):
        if healthy is not None and not healthy():
            raise CliError("a fleet worker process exited; stopping the others")
        if time.monotonic() >= end:
            break


@click.group("rig")
def rig_group() -> None:
    """Rigs without hardware: simulated trainees, recordings and replays."""


@rig_group.command("sim")
@click.option("--count", type=click.IntRange(1, 5000), default=1, show_default=True)
@click.option("--skill-mix", default="expert:0.2,intermediate:0.5,novice:0.3", show_default=True,
              help="Shares of skill presets (expert, intermediate, novice).")
@click.option("--controller", "endpoint", help="Control endpoint (default: from the settings).")
@click.option("--processes", type=click.IntRange(1, 512), default=None,
              help="Worker processes (default: one per CPU core, at most --count).")
@click.option("--trackers", default="tool,headset,off_hand", show_default=True,
              help="Tracker names; e.g. tool,headset,off_hand,controller_left,"
                   "controller_right,waist for the 6-tracker load-test shape.")
@click.option("--rate", type=click.Choice(["90", "120"]), default="120", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prefix", default="sim", show_default=True, help="Rig ids are PREFIX-000 ...")
@click.option("--seconds", type=float, default=None, help="Run this long (default: until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print worker statistics as JSON lines.")
@click.pass_context
def sim_command(ctx: click.Context, count: int, skill_mix: str, endpoint: str | None,
                processes: int | None, trackers: str, rate: str, seed: int, prefix: str,
                seconds: float | None, as_json: bool) -> None:
    """Start COUNT simulated rigs (full protocol peers) against a controller."""
    import os

    from devices.fleet import Fleet, FleetSpec
    from devices.sim.skill import parse_skill_mix
    from lab_controller.exercises import exercise_ids, scene_for

    try:
        parse_skill_mix(skill_mix)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    spec = FleetSpec(controller=_controller(ctx, endpoint), count=count, skill_mix=skill_mix,
                     trackers=_trackers(trackers), rate_hz=float(rate), seed=seed,
                     rig_prefix=prefix,
                     processes=processes or min(count, os.cpu_count() or 1),
                     # any exercise may be launched on these rigs: ready for each of them
                     warmup_scenes=[scene_for(e) for e in exercise_ids()])
    skills = spec.skills()
    summary = {s: skills.count(s) for s in sorted(set(skills))}
    click.echo(f"starting {count} simulated rigs ({summary}) in {len(spec.shares())} "
               f"process(es) against {spec.controller}", err=True)
    fleet = Fleet(spec, stats_every=5.0 if as_json else 0.0)
    fleet.start()
    try:
        if as_json:
            def pump() -> None:
                for p in fleet.procs:
                    threading.Thread(target=_echo_lines, args=(p,), daemon=True).start()

            pump()
        _wait_for_signal(seconds, lambda: fleet.alive() == len(fleet.procs))
    finally:
        codes = fleet.stop()
    if any(c not in (0, None, -signal.SIGTERM) for c in codes):
        raise CliError(f"worker exit codes {codes}")


def _echo_lines(proc: Any) -> None:
    for line in proc.stdout:
        click.echo(line.rstrip())


@rig_group.command("record")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", type=click.Choice(["sim", "lsl"]), default="sim", show_default=True)
@click.option("--seconds", type=float, default=60.0, show_default=True,
              help="Longest recording (a simulated exercise may end earlier).")
@click.option("--exercise", default="fillet_t_joint_h", show_default=True,
              help="Exercise whose scene the simulated trainee performs.")
@click.option("--skill", default="intermediate", show_default=True)
@click.option("--trackers", default="tool,headset,off_hand", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rig-id", default="rig-rec", show_default=True)
@click.option("--lsl-name", default=None, help="LSL stream name (source lsl).")
@click.option("--lsl-type", default="MoCap", show_default=True, help="LSL stream type.")
@click.option("--fast", is_flag=True,
              help="Source sim: run on a virtual clock, as fast as possible (same samples).")
def record_command(out_path: Path, source: str, seconds: float, exercise: str, skill: str,
                   trackers: str, seed: int, rig_id: str, lsl_name: str | None,
                   lsl_type: str, fast: bool) -> None:
    """Record a live stream to a self-describing NPZ file (replay it with `labctl rig replay`)."""
    from devices.driver import SessionContext
    from devices.recording import record_driver
    from lab_controller.exercises import ExerciseNotFound, scene_for

    session = SessionContext(str(uuid.uuid4()), exercise, "recording")
    driver: Any
    scene: dict[str, Any] = {}
    sleep: Any = time.sleep
    if fast and source != "sim":
        raise CliError("--fast needs --source sim (a live stream runs in real time)")
    if source == "sim":
        from devices.sim.rig import SimulatedRig

        try:
            scene = scene_for(exercise)
        except ExerciseNotFound as exc:
            raise CliError(str(exc)) from exc
        if fast:
            virtual = [0.0]

            def sleep(dt: float) -> None:
                virtual[0] += dt

            driver = SimulatedRig(skill, trackers=_trackers(trackers), seed=seed,
                                  clock=lambda: virtual[0])
        else:
            driver = SimulatedRig(skill, trackers=_trackers(trackers), seed=seed)
    else:
        from devices.lsl import LslRig, LslUnavailable

        try:
            driver = LslRig(name=lsl_name, stream_type=lsl_type)
        except (LslUnavailable, LookupError, ValueError) as exc:
            raise CliError(str(exc)) from exc
    rec = record_driver(driver, session, scene, {"seed": seed} if source == "sim" else {},
                        seconds, sleep=sleep, meta={"rig_id": rig_id, "source": source,
                                                    "skill": skill if source == "sim" else None})
    rec.save(out_path)
    click.echo(json.dumps({"file": str(out_path), "samples": rec.n, "gaps": rec.gaps(),
                           "trackers": [t["name"] for t in rec.meta["trackers"]],
                           "seconds": round(float(rec.t[-1] - rec.t[0]), 3) if rec.n else 0}))


@rig_group.command("replay")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--controller", "endpoint", help="Control endpoint (default: from the settings).")
@click.option("--rig-id", default=None, help="Rig id (default: the recording's, or 'replay').")
@click.option("--speed", default="1", show_default=True,
              help="Playback speed factor, or 'max' for as fast as possible.")
@click.option("--local", is_flag=True,
              help="Play without a controller and print what would be sent (a check).")
@click.option("--trackers", "export_trackers", default=None,
              help="For an export: tracker name:role list in column order "
                   "(default tool:tool, tracker1:other, ...).")
@click.option("--analog", "export_analog", default=None,
              help="For an export: analog channel names in column order (default a0, a1 ...).")
@click.option("--rate", "export_rate", type=float, default=None,
              help="For an export: nominal rate in Hz (default: from the time stamps).")
@click.pass_context
def replay_command(ctx: click.Context, path: Path, endpoint: str | None, rig_id: str | None,
                   speed: str, local: bool, export_trackers: str | None,
                   export_analog: str | None, export_rate: float | None) -> None:
    """Replay a recording (NPZ) or a telemetry export (CSV/Parquet) as a rig."""
    from devices.replay import ReplayRig, load_any

    options: dict[str, Any] = {"rate_hz": export_rate}
    if export_trackers:
        pairs = [p.strip().partition(":") for p in export_trackers.split(",") if p.strip()]
        options["tracker_names"] = [n for n, _, _ in pairs]
        options["roles"] = [r or "other" for _, _, r in pairs]
    if export_analog:
        options["analog_names"] = [a.strip() for a in export_analog.split(",") if a.strip()]
    try:
        factor = math.inf if speed == "max" else float(speed)
        rec = load_any(path, **options)
        rig = ReplayRig(rec, speed=factor)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if local:
        from devices.driver import SessionContext

        rig.start(SessionContext(str(uuid.uuid4()), "replay", "replay"), {}, {})
        n = blocks = 0
        t0 = time.monotonic()
        while not rig.finished:
            for b in rig.read(rig.clock()):
                n += b.count
                blocks += 1
            if not rig.fast:
                time.sleep(0.01)
        click.echo(json.dumps({"samples": n, "blocks": blocks, "gaps": rec.gaps(),
                               "wall_s": round(time.monotonic() - t0, 3)}))
        return
    from devices.agent import AgentConfig, AgentGroup, RigAgent

    rid = rig_id or str(rec.meta.get("rig_id") or "replay")
    agent = RigAgent(AgentConfig(controller=_controller(ctx, endpoint), rig_id=rid,
                                 software_version="replay"), rig)
    group = AgentGroup([agent])
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: group.stop())
    click.echo(f"rig {rid} replaying {path.name} ({rec.n} samples); start a session on it "
               "from the controller; Ctrl-C ends", err=True)
    group.run()
