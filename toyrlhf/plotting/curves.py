"""Learning curves: one run's panels (curves.png), a reward model's, and runs grouped by algorithm with a seed
bootstrap band (`toyrlhf plot`, `compare`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from .frontier import frontier_figure
from .run_data import Run, aligned, available_metrics, check_metrics, group_runs, load_run, steps_text, tasks_text
from .stats import LEVEL, bootstrap_band, smooth
from .style import RC, colour_for, legend, metric_label, new_figure, output_format, save_figure, tidy

DEFAULT_METRICS = ("gold_reward", "reward", "kl", "entropy", "response_length")
COMPARE_METRICS = ("gold_reward", "reward", "kl", "response_length")
RUN_CURVE_METRICS = ("reward", "gold_reward", "kl", "entropy", "response_length", "clip_fraction",
                     "explained_variance", "accuracy")


def _seed_text(groups: dict[str, list[Run]]) -> str:
    ns = sorted({len(g) for g in groups.values()})
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    if ns[-1] < 2:
        return "1 seed each"
    return f"mean of {n} seeds, {LEVEL:.0%} bootstrap band"


def run_curves_figure(run: Run):
    """The per-run figure: one small panel per learning curve present in the run."""
    import matplotlib
    have = set(run.metrics())
    keys = [k for k in RUN_CURVE_METRICS if k in have]
    if not keys:
        keys = sorted(have)[:6] or ["step"]
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(keys), 4.2, 3.0)
        n = len(run.rows)
        k = max(1, n // 20) if n >= 40 else 1
        colour = colour_for(run.algo, [run.algo])
        for ax, key in zip(axes, keys):
            steps, vals = run.series(key)
            title, unit = metric_label(key)
            if k > 1:
                ax.plot(steps, vals, color=colour, alpha=0.3, lw=1)
                ax.plot(steps, smooth(vals, k), color=colour, lw=2)
            else:
                ax.plot(steps, vals, color=colour, lw=2, marker="o" if n < 15 else None)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            tidy(ax, key)
        seed = f" · seed {run.seed}" if run.seed is not None else ""
        smooth_txt = f" · bold: moving average over {k} steps" if k > 1 else ""
        fig.suptitle(f"{run.algo} on {run.task}{seed} · {steps_text([run])}{smooth_txt}")
    return fig


def rm_curves_figure(records: Sequence[dict], summary: dict):
    """Learning curves of a reward-model stage: BT loss and accuracy against step, minibatch (faint, with a moving
    average) and held-out (points), against the Bayes loss floor and accuracy ceiling of the held-out pairs."""
    import matplotlib
    steps = np.array([r["step"] for r in records], dtype=np.float64)
    ev = [r for r in records if "heldout_loss" in r]
    k = max(1, len(records) // 25)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(2, 5.4, 3.9)
        for ax, key, ho_key, floor_key, floor_name, title, unit in (
                (axes[0], "loss", "heldout_loss", "heldout_bayes_loss", "Bayes loss floor", "Bradley-Terry loss",
                 "nats / pair"),
                (axes[1], "acc", "heldout_expected_accuracy", "bayes_accuracy", "Bayes ceiling", "accuracy",
                 "fraction of pairs")):
            vals = np.array([r[key] for r in records], dtype=np.float64)
            ax.plot(steps, vals, color="tab:blue", alpha=0.25, lw=1)
            ax.plot(steps, smooth(vals, k), color="tab:blue", lw=2, label=f"train minibatch (moving average, {k})")
            if ev:
                ax.plot([r["step"] for r in ev], [r[ho_key] for r in ev], "o-", color="tab:orange", lw=2,
                        label="held-out" + (" (expected over the labels)" if key == "acc" else ""))
            if summary.get(floor_key) is not None:
                ax.axhline(summary[floor_key], color="k", ls="--", lw=1, label=f"{floor_name} (held-out pairs)")
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            ax.legend(frameon=False, fontsize=9)
            tidy(ax)
        head = summary.get("head", "")
        fig.suptitle(f"reward model on {summary.get('task', '?')} · head {head} · seed {summary.get('seed', '?')} · "
                     f"{summary.get('n_train_pairs', '?')} training pairs")
    return fig


def plot_run_curves(run_dir, out) -> Path:
    """A run's learning curves (reward, gold reward, KL, entropy, response length, and clip fraction, explained
    variance, accuracy when the run logs them), one small panel each, titled with algorithm, task and steps."""
    output_format(out)
    return save_figure(run_curves_figure(load_run(run_dir)), out)


def runs_figure(runs: Sequence[Run], metrics: Sequence[str], smooth_k: int = 1):
    """Curves against step, one panel per metric, one line per algorithm: mean over its seeds, with a 95%
    bootstrap band over seeds when it has at least 2."""
    import matplotlib
    groups = group_runs(runs)
    names = list(groups)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(metrics), 5.4, 3.9)
        for ax, key in zip(axes, metrics):
            for name, group in groups.items():
                steps, vals = aligned(group, key, smooth_k)
                if not np.isfinite(vals).any():
                    continue
                mean, lo, hi = bootstrap_band(vals)
                colour = colour_for(name, names)
                label = f"{name} ({len(group)} seed{'s' if len(group) != 1 else ''})"
                ax.plot(steps, mean, color=colour, lw=2.2, label=label, marker="o" if steps.size < 15 else None)
                if np.isfinite(lo).any():
                    ax.fill_between(steps, lo, hi, color=colour, alpha=0.2, lw=0)
            title, unit = metric_label(key)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            tidy(ax, key)
        legend(fig, axes)
        smooth_txt = f" · moving average over {smooth_k} steps" if smooth_k > 1 else ""
        fig.suptitle(f"{tasks_text(runs)} · {steps_text(runs)} · {_seed_text(groups)}{smooth_txt}")
    return fig


def plot_runs(run_dirs, metrics=None, out="plot.png", smooth: int = 1, frontier: bool = False) -> Path:
    """Curves of `metrics` (default: gold reward, reward, KL, entropy, response length) for the runs in `run_dirs`
    (run folders, or `Run`s already loaded), grouped by algorithm (config.json's "algo"), with a 95% bootstrap band
    over seeds; or, with `frontier`, training and gold reward against sqrt(KL). Format from `out`'s extension.
    Returns `out`."""
    output_format(out)
    if smooth < 1:
        raise UserError(f"smoothing window must be a positive integer, got {smooth}")
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise UserError("no run folders given")
    runs = [d if isinstance(d, Run) else load_run(d) for d in run_dirs]
    if frontier:
        check_metrics(runs, ("reward", "gold_reward", "kl"))
        return save_figure(frontier_figure(runs, smooth), out)
    if not metrics:
        have = available_metrics(runs)
        if not have:
            raise UserError(f"{runs[0].path}: metrics.jsonl has no numeric metric to plot")
        metrics = [m for m in DEFAULT_METRICS if m in have] or have[:len(DEFAULT_METRICS)]
    metrics = check_metrics(runs, metrics)
    return save_figure(runs_figure(runs, metrics, smooth), out)
