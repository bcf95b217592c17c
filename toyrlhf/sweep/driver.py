"""Drive a sweep: decide what to run (finished runs skipped, interrupted ones resumed from their checkpoint), build
the missing upstream stages level by level (each once, a level's stages in parallel), run the rest on a backend,
then write the table and the figure."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import stages
from ..config import RLConfig
from ..errors import UserError
from ..runs import read_json, remove_stale_temp_files
from ..settings import from_dict, to_dict
from . import report
from .grid import Grid, Point, missing_stage_levels
from .work import RUN_FILES



@dataclass
class Job:
    point: Point
    run_dir: Path
    resume: bool
    """Continue from the folder's checkpoint (an interrupted run) rather than start afresh."""


@dataclass
class Plan:
    finished: list[Point] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)


def run_state(run_dir: Path, point: Point) -> str:
    """'new', 'finished', 'interrupted' (config.json matches and a checkpoint exists) or 'foreign' (another run)."""
    cfg_path = run_dir / "config.json"
    if not run_dir.is_dir() or not cfg_path.is_file():
        return "new"
    try:   # resolved, so that a folder written before RLConfig gained a field (at its default) still matches
        same = to_dict(from_dict(RLConfig, read_json(cfg_path))) == to_dict(point.config)
    except UserError:
        same = False
    if not same:
        return "foreign"
    if (run_dir / "summary.json").is_file():
        return "finished"
    return "interrupted" if (run_dir / "checkpoint.npz").is_file() else "new"


def plan_sweep(grid: Grid, root: Path, overwrite: bool = False) -> Plan:
    """What to do with each point's folder root/<name>; a folder holding a different run is a UserError unless
    `overwrite` (then it is started afresh)."""
    plan = Plan()
    for p in grid.points:
        d = root / p.name
        state = run_state(d, p)
        if state == "foreign" and not overwrite:
            raise UserError(f"{d}: holds a run with other settings than the grid's point {p.name} "
                            f"(use --overwrite, or another --out)")
        if state == "finished" and not overwrite:
            plan.finished.append(p)
            continue
        if state in ("foreign", "new", "finished"):
            d.mkdir(parents=True, exist_ok=True)
            for f in RUN_FILES:
                (d / f).unlink(missing_ok=True)
            remove_stale_temp_files(d)
        plan.jobs.append(Job(p, d, resume=state == "interrupted"))
    return plan


@dataclass
class Outcome:
    run_dirs: dict[str, Path]
    """Finished runs (name -> folder), in grid order."""
    failed: dict[str, str]
    """name -> one-line error."""
    skipped: int
    stages_built: int
    markdown: str
    rows: list[dict]
    wall_s: float


def run_sweep(grid: Grid, root, backend, *, overwrite: bool = False, title: str = "sweep",
              echo: Callable[[str], None] = lambda s: None) -> Outcome:
    """Run the grid into root/<run name>/ on `backend` (local.LocalBackend or ray_backend.RayBackend), then write
    root/sweep.csv, sweep.md and sweep.png over every finished run."""
    t0 = time.perf_counter()
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    plan = plan_sweep(grid, root, overwrite)
    n = len(grid.points)
    if plan.finished:
        echo(f"{len(plan.finished)} of {n} runs already finished in {root} (skipped)")
    resumed = sum(j.resume for j in plan.jobs)
    if resumed:
        echo(f"{resumed} interrupted run{'s' if resumed != 1 else ''} resumed from their checkpoints")
    cache = stages.cache_dir()
    levels = missing_stage_levels((j.point.config for j in plan.jobs), cache)
    built = sum(len(lv) for lv in levels)
    if built:
        echo(f"upstream: {built} stage{'s' if built != 1 else ''} to build "
             f"({', '.join(f'{len(lv)} {lv[0].stage}' for lv in levels)}), each once, on {backend.describe()}")
        backend.build_stages(levels, cache, echo)
    failed: dict[str, str] = {}
    count = {"done": len(plan.finished)}

    def on_result(job: Job, result: dict) -> None:
        count["done"] += 1
        if "error" in result:
            failed[job.point.name] = result["error"]
            echo(f"[{count['done']}/{n}] {job.point.name} FAILED: {result['error']}")
            return
        s = result["summary"]
        gold = s.get("final_gold_reward")
        echo(f"[{count['done']}/{n}] {job.point.name} done" + (f", final gold reward {gold:.3f}" if gold is not None
                                                                else ""))

    if plan.jobs:
        echo(f"{len(plan.jobs)} run{'s' if len(plan.jobs) != 1 else ''} on {backend.describe()}")
        backend.run(plan.jobs, cache, on_result)
    run_dirs = {p.name: root / p.name for p in grid.points
                if p.name not in failed and (root / p.name / "summary.json").is_file()}
    md, rows = report.write_report(grid, run_dirs, root, title) if run_dirs else ("", [])
    return Outcome(run_dirs=run_dirs, failed=failed, skipped=len(plan.finished), stages_built=built, markdown=md,
                   rows=rows, wall_s=time.perf_counter() - t0)
