"""`toyrlhf sweep GRID.toml`: a grid of runs (algorithms x seeds x any setting) on local processes or a Ray cluster,
then one table (sweep.csv, sweep.md) and one figure (sweep.png)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from toyrlhf.errors import UserError
from toyrlhf.settings import parse_set_options

from .common import RUNS_FAILED, set_option


@click.command("sweep")
@click.argument("grid_file", type=click.Path(dir_okay=False), metavar="GRID.toml")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the runs (<run name>/) and the table and figure (default runs/sweep-<GRID name>). "
                   "Run the same command again to continue a sweep: finished runs are skipped, interrupted ones "
                   "resumed.")
@click.option("--jobs", type=int, default=None, metavar="J",
              help="Local processes (default: the CPUs this process may use; not with --ray).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on an existing Ray cluster instead (host:port of `ray start --head`, or 'auto'); needs "
                   "pip install 'toyrlhf[ray]'. The workers need no shared disk.")
@click.option("--overwrite", is_flag=True, help="Restart runs whose folder holds other settings, and finished ones.")
@set_option
def sweep_cmd(grid_file, out, jobs, ray_address, overwrite, overrides):
    """Run every point of GRID.toml's [grid] (every combination of its value lists; the other keys are fixed
    settings, `--set` overrides them), build each upstream stage once, then write sweep.csv and sweep.md (one row
    per grid point, a 95% Student-t interval over its seeds) and sweep.png (curves with seed bands).

    \b
    Example GRID.toml:
        steps = 200
        [grid]
        algo = ["grpo", "ppo"]
        seed = [0, 1, 2]
        lr = [1e-3, 3e-3]
    """
    from toyrlhf.sweep.driver import run_sweep
    from toyrlhf.sweep.grid import load_grid
    from toyrlhf.sweep.local import LocalBackend
    from toyrlhf.sweep.ray_backend import RayBackend
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {jobs}")
    if jobs is not None and ray_address:
        raise UserError("--jobs sets local processes; with --ray the cluster's CPUs decide")
    grid = load_grid(grid_file, parse_set_options(overrides))
    root = Path(out) if out else Path("runs") / f"sweep-{Path(grid_file).stem}"
    backend = RayBackend(ray_address) if ray_address else LocalBackend(jobs)
    title = (f"sweep {Path(grid_file).name}: {len(grid.points)} runs "
             f"({' × '.join(f'{len(v)} {k}' for k, v in grid.axes.items())})")
    try:
        outcome = run_sweep(grid, root, backend, overwrite=overwrite, title=title,
                            echo=lambda s: click.echo(s, err=True))
    finally:
        backend.close()
    for name, err in outcome.failed.items():
        click.echo(f"toyrlhf: run {name} failed: {err}", err=True)
    if not outcome.run_dirs:
        raise click.exceptions.Exit(RUNS_FAILED)
    click.echo(f"{title}: {len(outcome.run_dirs)} finished ({outcome.skipped} already were), "
               f"{outcome.stages_built} upstream stage{'s' if outcome.stages_built != 1 else ''} built, "
               f"{outcome.wall_s:.1f} s -> {root}")
    click.echo("")
    click.echo(outcome.markdown.rstrip("\n"))
    click.echo("")
    click.echo(f"  figure  {root / 'sweep.png'}")
    click.echo(f"  tables  {root / 'sweep.md'}, {root / 'sweep.csv'}")
    sys.stdout.flush()
    if outcome.failed:
        raise click.exceptions.Exit(RUNS_FAILED)


def register(app) -> None:
    app.add_command(sweep_cmd)
