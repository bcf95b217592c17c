"""Learning curves: one run folder's panels (curves.png of an RL run or a supervised stage), and runs grouped by
algorithm with a seed bootstrap band (`toyrlhf plot`, `compare`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..runs import read_json
from .frontier import frontier_figure
from .run_data import (Run, available_metrics, check_metrics, group_runs, load_run, runs_text, seed_count,
                       seed_values, stage_of, steps_text, tasks_text)
from .stats import LEVEL, bootstrap_band, smooth
from .style import RC, colour_for, legend, metric_label, new_figure, output_format, save_figure, style_for, tidy

DEFAULT_METRICS = ("gold_reward", "reward", "kl", "entropy", "response_length")
STAGE_METRICS = ("loss", "heldout_loss", "acc", "heldout_expected_accuracy")
"""What `toyrlhf plot` draws by default for a supervised stage's folder (pretrain, sft, rm)."""
COMPARE_METRICS = ("gold_reward", "reward", "kl", "response_length")
RUN_CURVES_DPI = 100
"""curves.png, a run's own quick look, at 100 dpi (1260 x 690 pixels for an RL run): a third less to rasterise and
encode than the 150 dpi of `toyrlhf plot`'s figures, every run pays it when it ends."""
RUN_CURVES_TICKS = 5
"""At most 5 tick intervals per axis of curves.png (7 by default on its panels): a quarter less drawing time."""
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
        fig, axes = new_figure(len(keys), 4.2, 3.0, fixed=True, ticks=RUN_CURVES_TICKS)
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


STAGE_FLOORS = {
    "rm": {"loss": ("heldout_bayes_loss", "Bayes loss floor (held-out pairs)"),
           "acc": ("bayes_accuracy", "Bayes ceiling (held-out pairs)")},
    "pretrain": {"loss": ("corpus_entropy_per_token", "corpus entropy (the floor)")},
}
"""Per stage and panel: the summary.json figure drawn as the line no model can pass, and its legend."""
STAGE_HELDOUT = {"loss": "heldout_loss", "acc": "heldout_expected_accuracy"}
"""The held-out counterpart a stage logs every eval_every steps beside its minibatch figure."""
_STAGE_NAMES = {"pretrain": "pretraining", "sft": "supervised fine-tuning"}   # a reward model is named by its head


def stage_curves_figure(run: Run, summary: dict | None = None):
    """Learning curves of a supervised stage's folder (pretrain, sft, rm): loss, and the minibatch accuracy a
    reward model logs, against step; minibatch (faint, with a trailing mean), held-out points where the stage logs
    them (a pretrained model's end-of-run held-out loss from summary.json), and the summary's floor or ceiling
    (STAGE_FLOORS: the Bayes loss floor and accuracy ceiling of a reward model, the corpus entropy of pretraining)."""
    import matplotlib
    summary = summary or {}
    stage = run.stage
    keys = [k for k in STAGE_HELDOUT if k in set(run.metrics())] or ["loss"]
    k = max(1, len(run.rows) // 25)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(keys), 5.4, 3.9, fixed=True, ticks=RUN_CURVES_TICKS)
        for ax, key in zip(axes, keys):
            steps, vals = run.series(key)
            ax.plot(steps, vals, color="tab:blue", alpha=0.25, lw=1)
            ax.plot(steps, smooth(vals, k), color="tab:blue", lw=2, label=f"train minibatch (trailing mean, {k})")
            ho_steps, ho = run.series(STAGE_HELDOUT[key])
            ok = np.isfinite(ho)
            if ok.any():
                ax.plot(ho_steps[ok], ho[ok], "o-", color="tab:orange", lw=2,
                        label="held-out" + (" (expected over the labels)" if key == "acc" else ""))
            elif key == "loss" and summary.get("heldout_loss") is not None:
                ax.errorbar([steps[-1]], [summary["heldout_loss"]], yerr=[summary.get("heldout_loss_se") or 0.0],
                            fmt="o", color="tab:orange", label="held-out, after training (± 1 s.e.)")
            floor_key, floor_name = STAGE_FLOORS.get(stage, {}).get(key, (None, None))
            if summary.get(floor_key) is not None:
                ax.axhline(summary[floor_key], color="k", ls="--", lw=1, label=floor_name)
            title, unit = metric_label(key, stage)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            ax.legend(frameon=False, fontsize=9)
            tidy(ax, key)
        pairs = f" · {summary['n_train_pairs']} training pairs" if "n_train_pairs" in summary else ""
        seed = f" · seed {run.seed}" if run.seed is not None else ""
        fig.suptitle(f"{_STAGE_NAMES.get(stage, run.algo)} on {run.task}{seed} · {steps_text([run])}{pairs}")
    return fig


def plot_run_curves(run_dir, out) -> Path:
    """A run folder's learning curves, one small panel each, titled with algorithm (or stage), task and steps: an RL
    run's reward, gold reward, KL, entropy, response length (and clip fraction, explained variance, accuracy when
    it logs them); a supervised stage's loss (and accuracy) against its held-out points and floor
    (`stage_curves_figure`, which reads the folder's summary.json)."""
    output_format(out)
    run = load_run(run_dir)
    if run.stage is None:
        return save_figure(run_curves_figure(run), out, dpi=RUN_CURVES_DPI)
    summary_path = Path(run_dir) / "summary.json"
    summary = read_json(summary_path) if summary_path.is_file() else {}
    return save_figure(stage_curves_figure(run, summary if isinstance(summary, dict) else {}), out,
                       dpi=RUN_CURVES_DPI)


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
