"""Run folders as data: config.json + metrics.jsonl loaded into `Run`, grouped by algorithm, aligned on steps,
and the final values the tables report."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import UserError
from ..runs import final_window, read_json, read_metrics
from .stats import smooth

@dataclass
class Run:
    """One run folder: its resolved config (possibly empty) and per-step metrics."""

    path: Path
    config: dict
    rows: list[dict]

    @property
    def stage(self) -> str | None:
        """'pretrain', 'sft' or 'rm' for a supervised stage's folder (its config.json says so); None for an RL run."""
        stage = self.config.get("stage")
        return str(stage) if stage is not None else None

    @property
    def algo(self) -> str:
        """The algorithm (config.json's "algo"); a stage's folder is named by its stage (and a reward model's head)."""
        if "algo" in self.config:
            return str(self.config["algo"])
        if self.stage == "rm":
            head = (self.config.get("rm") or {}).get("head") if isinstance(self.config.get("rm"), dict) else None
            return f"reward model, {head} head" if head else "reward model"
        return self.stage or "?"

    def _stage_setting(self, key: str):
        """A pretrain folder's config.json keeps task and seed in its "pretrain" table."""
        inner = self.config.get(self.stage or "")
        return inner.get(key) if isinstance(inner, dict) else None

    @property
    def task(self) -> str:
        task = self.config.get("task", self._stage_setting("task"))
        return "?" if task is None else str(task)

    @property
    def seed(self):
        return self.config.get("seed", self._stage_setting("seed"))

    @property
    def steps(self) -> int:
        """Planned steps (config.json), or the last logged step."""
        last = int(self.rows[-1].get("step", len(self.rows))) if self.rows else 0
        return int(self.config.get("steps", last) or last)

    def metrics(self) -> list[str]:
        """Numeric metrics with at least one finite value (without `step`)."""
        out = set()
        for r in self.rows:
            for k, v in r.items():
                if k != "step" and is_number(v) and math.isfinite(v):
                    out.add(k)
        return sorted(out)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) with NaN where the metric is missing or None."""
        steps = np.array([r.get("step", i + 1) for i, r in enumerate(self.rows)], dtype=np.float64)
        vals = np.array([r.get(key) if is_number(r.get(key)) else np.nan for r in self.rows], dtype=np.float64)
        return steps, vals


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_run(run_dir) -> Run:
    """A run folder; a folder without metrics.jsonl, or with no step logged, is a UserError."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder")
    if not (path / "metrics.jsonl").is_file():
        hint = ""
        if any((p / "metrics.jsonl").is_file() for p in path.iterdir() if p.is_dir()):
            hint = f" (it holds run folders: pass them, e.g. {path}/*/)"
        raise UserError(f"{path}: no metrics.jsonl, not a run folder{hint}")
    rows = read_metrics(path)
    if not rows:
        raise UserError(f"{path}: metrics.jsonl has no steps yet")
    for i, r in enumerate(rows, 1):
        if type(r.get("step")) is not int:   # {"step": true} is not step 1
            raise UserError(f"{path / 'metrics.jsonl'}: record {i} has no integer step")
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    if not isinstance(config, dict):
        raise UserError(f"{path / 'config.json'}: expected a table of settings")
    return Run(path, config, rows)


def find_runs(paths) -> tuple[list[Path], dict[Path, int], list[Path]]:
    """The run folders among `paths` (what `toyrlhf plot runs/*/` is given): a run folder is kept; a folder without
    metrics.jsonl that holds run folders (a compare or sweep folder) is replaced by them, one level down; any other
    folder is skipped. Returns (run folders, {folder descended into: runs found}, skipped folders). A path that is
    not a folder, or no run folder at all, is a UserError."""
    found: list[Path] = []
    descended: dict[Path, int] = {}
    skipped: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise UserError(f"{p}: no such run folder")
        if (p / "metrics.jsonl").is_file():
            found.append(p)
            continue
        inner = sorted(c for c in p.iterdir() if c.is_dir() and (c / "metrics.jsonl").is_file())
        if inner:
            found.extend(inner)
            descended[p] = len(inner)
        else:
            skipped.append(p)
    if not found:
        if not skipped:
            raise UserError("no run folders given")
        load_run(skipped[0])          # its one-line error says what the folder lacks
    return list(dict.fromkeys(found)), descended, skipped


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by algorithm (by 'algo · task' when the runs span several tasks), in order of appearance."""
    several_tasks = len({r.task for r in runs}) > 1
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(f"{r.algo} · {r.task}" if several_tasks else r.algo, []).append(r)
    return groups


def seed_count(runs: Sequence[Run]) -> int:
    """Distinct seeds among the runs (a run without a seed in its config counts as its own): six runs of seed 0
    are one seed."""
    return len({("seed", r.seed) if r.seed is not None else ("run", i) for i, r in enumerate(runs)})


def runs_text(runs: Sequence[Run]) -> str:
    """'3 seeds', '1 seed', or '6 runs, 1 seed' when seeds repeat."""
    n, s = len(runs), seed_count(runs)
    seeds = f"{s} seed{'s' if s != 1 else ''}"
    return seeds if n == s else f"{n} runs, {seeds}"


def seed_values(runs: Sequence[Run], key: str, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values (n_seeds, n_steps)): `aligned`, with the runs of one seed averaged into one row, so that a
    band over the rows is a band over seeds, not over repeats of a seed."""
    steps, vals = aligned(runs, key, k)
    rows: dict = {}
    for i, r in enumerate(runs):
        rows.setdefault(("seed", r.seed) if r.seed is not None else ("run", i), []).append(i)
    out = np.full((len(rows), steps.size), np.nan)
    for j, idx in enumerate(rows.values()):
        v = vals[idx]
        n = np.isfinite(v).sum(axis=0)
        out[j] = np.where(n > 0, np.nansum(v, axis=0) / np.maximum(n, 1), np.nan)
    return steps, out


def stage_of(runs: Sequence[Run]) -> str | None:
    """The runs' common stage: None for RL runs, 'mixed' when they mix stages (a panel's `loss` is then no one's)."""
    stages = {r.stage for r in runs}
    return stages.pop() if len(stages) == 1 else "mixed"


def available_metrics(runs: Sequence[Run]) -> list[str]:
    return sorted(set().union(*(r.metrics() for r in runs)))


def check_metrics(runs: Sequence[Run], metrics: Iterable[str]) -> list[str]:
    available = available_metrics(runs)
    out = []
    for m in metrics:
        if m not in available:
            raise UserError(f"unknown metric {m!r}; available: {', '.join(available)}")
        if m not in out:
            out.append(m)
    return out


def aligned(runs: Sequence[Run], key: str, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values (n_runs, n_steps)) on the union of the runs' steps, each run smoothed over k steps first."""
    series = [r.series(key) for r in runs]
    grid = np.unique(np.concatenate([s for s, _ in series]))
    out = np.full((len(runs), grid.size), np.nan)
    for i, (s, v) in enumerate(series):
        out[i, np.searchsorted(grid, s)] = smooth(v, k)
    return grid, out


def final_value(run: Run, key: str):
    """Mean of `key` over the last max(1, min(25, steps // 5)) steps (the rule summary.json's final_* uses)."""
    rows = run.rows[-final_window(len(run.rows)):]
    vals = [r[key] for r in rows if is_number(r.get(key)) and math.isfinite(r[key])]
    return float(np.mean(vals)) if vals else None


def wall_time(run: Run) -> float:
    path = run.path / "summary.json"
    if path.is_file():
        w = read_json(path).get("wall_time_s")
        if is_number(w):
            return float(w)
    return float(sum(r.get("time_s", 0.0) or 0.0 for r in run.rows))


def steps_text(runs: Sequence[Run]) -> str:
    steps = sorted({r.steps for r in runs})
    return f"{steps[0]} steps" if len(steps) == 1 else f"{steps[0]}–{steps[-1]} steps"


def tasks_text(runs: Sequence[Run]) -> str:
    tasks = list(dict.fromkeys(r.task for r in runs))
    return ("task " if len(tasks) == 1 else "tasks ") + ", ".join(tasks)
