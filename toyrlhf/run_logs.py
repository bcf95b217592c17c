"""Extra views of an RL run's log: decoded completions (completions.jsonl, TRL's log_completions), a CSV copy of
metrics.jsonl (the csv module) and an optional TensorBoard writer (tensorboardX, imported only when enabled)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from . import tokens as tk
from .errors import UserError
from .runs import atomic_write_bytes, read_metrics

MAX_LOGGED = 8
"""Completions logged per logging step: the first of each prompt's group, at most this many prompts."""


def completion_records(step: int, ro, task) -> list[dict]:
    """One record per logged completion of rollout `ro`: decoded text, reward, gold reward, length, truncation."""
    rows = np.arange(min(MAX_LOGGED, ro.n_groups)) * ro.group_size
    prompts, completions = tk.split(ro.tokens[rows], task.prompt_len)
    out = []
    for i, r in enumerate(rows):
        out.append({"step": step, "text": task.describe(prompts[i], completions[i]),
                    "reward": float(ro.reward[r]), "gold_reward": float(ro.gold_reward[r]),
                    "length": int(ro.lengths[r]), "truncated": bool(ro.truncated[r])})
    return out


class CompletionsLog:
    """completions.jsonl, appended and flushed per logging step; on resume cut back to the checkpoint's step (the
    later steps are recomputed identically)."""

    def __init__(self, path, truncate_to_step: int | None = None):
        self.path = Path(path)
        if truncate_to_step is not None and self.path.is_file():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= truncate_to_step:
                        kept.append(line + "\n")
                except (ValueError, AttributeError):
                    break    # a half-written last line
            atomic_write_bytes(self.path, "".join(kept).encode())
        self._f = open(self.path, "a")

    def write(self, records: list[dict]) -> None:
        self._f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class TensorBoardLog:
    """Each metric of a step as a scalar (tag = metric name, global step = the RL step) in RUN_DIR/tb."""

    def __init__(self, log_dir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise UserError("tensorboard=true needs tensorboardX: pip install 'toyrlhf[tensorboard]'") from None
        self._w = SummaryWriter(logdir=str(log_dir))

    def write(self, metrics: dict) -> None:
        step = int(metrics["step"])
        for k, v in metrics.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                self._w.add_scalar(k, float(v), step)
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def metrics_csv(run_dir) -> str:
    """metrics.jsonl as CSV: one row per step, a column per metric (sorted, step first; empty where absent)."""
    rows = read_metrics(run_dir)
    keys = sorted({k for r in rows for k in r} - {"step"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["step", *keys], lineterminator="\n", restval="")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()
