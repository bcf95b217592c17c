"""The sweep's table and figure: one row (and one curve) per grid point without its seed, with a 95% Student-t
interval over the seeds (plotting.t_interval, scipy.stats.t); CSV through the csv module."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from .. import plotting
from ..runs import atomic_write_bytes
from .grid import Grid, Point

STAT_COLUMNS = ("seeds", "steps", "final_gold_reward", "final_gold_reward_ci95", "final_gold_reward_lo",
                "final_gold_reward_hi", "final_reward", "final_kl", "final_response_length", "wall_time_s")


def sweep_rows(grid: Grid, run_dirs: dict[str, Path]) -> list[dict]:
    """Per label (grid point without its seed), in grid order: its grid values and plotting.comparison_table's
    statistics over the finished seeds."""
    groups: dict[str, list[Point]] = {}
    for p in grid.points:
        if p.name in run_dirs:
            groups.setdefault(p.label, []).append(p)
    rows = []
    for label, points in groups.items():
        (stats,) = plotting.comparison_table([run_dirs[p.name] for p in points])   # one algorithm per label
        values = {k: points[0].values[k] for k in grid.axes if k != "seed"}
        rows.append({**stats, **values, "label": label})
    return rows


def table_csv(grid: Grid, rows: list[dict]) -> str:
    keys = [k for k in grid.axes if k != "seed"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["label", *keys, *STAT_COLUMNS], lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else
                        f"{v:.6g}" if isinstance(v, float) and k in STAT_COLUMNS else v) for k, v in r.items()})
    return buf.getvalue()


def table_markdown(rows: list[dict]) -> str:
    """plotting.table_markdown with the grid point's label in the first column."""
    md = plotting.table_markdown([{**r, "algo": r["label"]} for r in rows])
    return md.replace("| algorithm |", "| run (grid point) |", 1)


def sweep_figure(grid: Grid, run_dirs: dict[str, Path], out: Path, smooth: int) -> Path:
    """Curves of plotting.COMPARE_METRICS with seed bands, one colour per label."""
    label = {p.name: p.label for p in grid.points}
    runs = []
    for name, d in run_dirs.items():
        r = plotting.load_run(d)
        r.config = {**r.config, "algo": label[name]}     # plotting groups runs by their 'algo'
        runs.append(r)
    metrics = plotting.check_metrics(runs, [m for m in plotting.COMPARE_METRICS
                                            if m in plotting.available_metrics(runs)])
    return plotting.save_figure(plotting.runs_figure(runs, metrics, smooth), out)


def write_report(grid: Grid, run_dirs: dict[str, Path], root: Path, title: str) -> tuple[str, list[dict]]:
    """sweep.csv, sweep.md and sweep.png in root; returns the Markdown table and the rows."""
    rows = sweep_rows(grid, run_dirs)
    md = table_markdown(rows)
    atomic_write_bytes(root / "sweep.md", (f"# {title}\n\n" + md).encode())
    atomic_write_bytes(root / "sweep.csv", table_csv(grid, rows).encode())
    k = max(1, max(p.config.steps for p in grid.points) // 25)
    sweep_figure(grid, run_dirs, root / "sweep.png", k)
    return md, rows
