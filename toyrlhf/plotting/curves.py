"""Learning curves: one run's panels (curves.png), a reward model's, and runs grouped by algorithm with a seed
bootstrap band (`toyrlhf plot`, `compare`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from .frontier import frontier_figure
from .run_data import (Run, available_metrics, check_metrics, group_runs, load_run, runs_text, seed_count,
                       seed_values, stage_of, steps_text, tasks_text)
from .stats import LEVEL, bootstrap_band, smooth
from .style import RC, colour_for, legend, metric_label, new_figure, output_format, save_figure, style_for, tidy

DEFAULT_METRICS = ("gold_reward", "reward", "kl", "entropy", "response_length")
STAGE_METRICS = ("loss", "heldout_loss", "acc", "heldout_expected_accuracy")
"""What `toyrlhf plot` draws by default for a supervised stage's folder (pretrain, sft, rm)."""
COMPARE_METRICS = ("gold_reward", "reward", "kl", "response_length")
RUN_CURVE_METRICS = ("reward", "gold_reward", "kl", "entropy", "response_length", "clip_fraction",
                     "explained_variance", "accuracy")


def _seed_text(groups: dict[str, list[Run]]) -> str:
    ns = sorted({seed_count(g) for g in groups.values()})
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    if ns[-1] < 2:
        return "1 seed each" if len(groups) > 1 else "1 seed"
    return f"mean of {n} seeds, {LEVEL:.0%} bootstrap band over seeds"


def _all_zero(vals: np.ndarray) -> bool:
    finite = vals[np.isfinite(vals)]
    return finite.size > 0 and not finite.any()


def run_curves_figure(run: Run):
    """The per-run figure: one small panel per learning curve present in the run."""
    import matplotlib
    have = set(run.metrics())
    keys = [k for k in RUN_CURVE_METRICS if k in have]
    if not keys:
        keys = sorted(have)[:6] or ["step"]
    # a panel that is 0 at every step (GRPO's clip fraction with one update per rollout) says so in the title instead
    zero = [k for k in keys if len(keys) > 1 and _all_zero(run.series(k)[1])]
    keys = [k for k in keys if k not in zero]
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(keys), 4.2, 3.0)
        n = len(run.rows)
        k = max(1, n // 20) if n >= 40 else 1
        colour = colour_for(run.algo, [run.algo])
        for ax, key in zip(axes, keys):
            steps, vals = run.series(key)
            title, unit = metric_label(key, run.stage)
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
        smooth_txt = f" · bold: trailing mean over {k} steps" if k > 1 else ""
        zero_txt = f"\n{', '.join(metric_label(z, run.stage)[0] for z in zero)}: 0 at every step (not drawn)" if zero else ""
        fig.suptitle(f"{run.algo} on {run.task}{seed} · {steps_text([run])}{smooth_txt}{zero_txt}")
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
            ax.plot(steps, smooth(vals, k), color="tab:blue", lw=2, label=f"train minibatch (trailing mean, {k})")
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
    """Curves against step, one panel per metric, one line per algorithm: mean over its seeds (runs of the same seed
    averaged first), with a 95% bootstrap band over seeds when it has at least 2 distinct seeds."""
    import matplotlib
    groups = group_runs(runs)
    names = list(groups)
    stage = stage_of(runs)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(metrics), 5.4, 3.9)
        for ax, key in zip(axes, metrics):
            for name, group in groups.items():
                steps, vals = seed_values(group, key, smooth_k)
                mean, lo, hi = bootstrap_band(vals)
                ok = np.isfinite(mean)            # held-out metrics are logged every eval_every steps only
                if not ok.any():
                    continue
                style = style_for(name, names)
                n = int(ok.sum())
                ax.plot(steps[ok], mean[ok], color=style["color"], ls=style["ls"], lw=2.2,
                        label=f"{name} ({runs_text(group)})", marker=style["marker"], ms=5,
                        markevery=1 if n < 15 else max(1, n // 8))
                band = ok & np.isfinite(lo)
                if band.any():
                    ax.fill_between(steps[band], lo[band], hi[band], color=style["color"], alpha=0.2, lw=0)
            title, unit = metric_label(key, stage)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            tidy(ax, key)
        legend(fig, axes)
        smooth_txt = f" · trailing mean over {smooth_k} steps" if smooth_k > 1 else ""
        fig.suptitle(f"{tasks_text(runs)} · {steps_text(runs)} · {_seed_text(groups)}{smooth_txt}")
    return fig


def default_metrics(runs: Sequence[Run]) -> list[str]:
    """The panels `plot_runs` draws without `metrics`: gold reward, reward, KL, entropy, response length (RL runs);
    loss and accuracy, minibatch and held-out (a supervised stage); else the first five metrics logged."""
    have = available_metrics(runs)
    if not have:
        raise UserError(f"{runs[0].path}: metrics.jsonl has no numeric metric to plot")
    return [m for m in DEFAULT_METRICS + STAGE_METRICS if m in have] or have[:len(DEFAULT_METRICS)]


def plot_runs(run_dirs, metrics=None, out="plot.png", smooth: int = 1, frontier: bool = False,
              exact_frontiers=None) -> Path:
    """Curves of `metrics` (default: gold reward, reward, KL, entropy, response length) for the runs in `run_dirs`
    (run folders, or `Run`s already loaded), grouped by algorithm (config.json's "algo"), with a 95% bootstrap band
    over seeds; or, with `frontier`, training and gold reward against sqrt(KL), over `exact_frontiers` when given
    (toyrlhf.rl.exact_frontier.run_frontiers). Format from `out`'s extension. Returns `out`."""
    output_format(out)
    if smooth < 1:
        raise UserError(f"smoothing window must be a positive integer, got {smooth}")
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise UserError("no run folders given")
    runs = [d if isinstance(d, Run) else load_run(d) for d in run_dirs]
    if frontier:
        check_metrics(runs, ("reward", "gold_reward", "kl"))
        return save_figure(frontier_figure(runs, smooth, exact_frontiers), out)
    metrics = check_metrics(runs, metrics or default_metrics(runs))
    return save_figure(runs_figure(runs, metrics, smooth), out)
