"""`labctl workers ...`: scoring worker processes for scale-out scoring (docs/scoring-workers.md)."""

from __future__ import annotations

import click


@click.group("workers")
def workers_group() -> None:
    """Scoring workers: run kernels in processes on this or other machines."""


@workers_group.command("run")
@click.option("--connect", required=True, metavar="ENDPOINT",
              help="The controller's scoring pool endpoint, e.g. tcp://lab-ctl:5570.")
@click.option("--processes", "-n", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes to run here (one per core is the sensible maximum).")
@click.option("--id", "worker_id", default=None, help="Worker id (with -n 1 only).")
def run_cmd(connect: str, processes: int, worker_id: str | None) -> None:
    """Run scoring workers connected to a controller's pool until Ctrl-C."""
    import subprocess
    import sys

    if processes == 1:
        from lab_controller.scoring_workers import main

        raise SystemExit(main(["--connect", connect] + (["--id", worker_id] if worker_id else [])))
    procs = [subprocess.Popen([sys.executable, "-m", "lab_controller.scoring_workers",
                               "--connect", connect]) for _ in range(processes)]
    click.echo(f"{processes} scoring workers → {connect} (pids {[p.pid for p in procs]})")
    try:
        for p in procs:
            p.wait()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
