"""Reward-model accuracy against the number of preference pairs, for both reward heads, on exact population figures.

For each number of pairs (train + held-out), each head ('sequence', the default, and 'mean') and seeds 0..S-1 of the
data / initialisation / minibatch streams, one RM is trained with the default settings from the seed-0 SFT model of
the default task. The y-axis is not a sampled accuracy: it is the RM's expected accuracy over *every* pair of distinct
SFT completions of the held-out prompts, and the Bayes ceiling of the same population, both enumerated exactly
(`preferences.exact_pair_expectations`), so the only spread left between seeds is that of training.

    python plots/rm_data_scaling.py            # writes plots/rm_data_scaling.png and plots/rm_data_scaling.md
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")     # one BLAS thread per worker: the workers use the cores

import numpy as np  # noqa: E402

PAIRS = (500, 1000, 2000, 4000, 8000, 16000, 32000, 64000)
HEADS = ("sequence", "mean")
HERE = Path(__file__).resolve().parent


def one_rm(job: tuple[str, int, int]) -> tuple[str, int, int, float, float, float]:
    """(head, pairs, seed) -> (head, pairs, seed, exact held-out expected accuracy, exact ceiling, wall seconds)."""
    import time

    from toyrlhf import reward_model as R
    from toyrlhf import stages
    from toyrlhf.tasks import get_task

    head, pairs, seed = job
    sft = stages.cached_sft(stages.Pipeline())[0]
    t0 = time.perf_counter()
    _, s = R.train_reward_model(sft, get_task("pref"), R.RMConfig(head=head, pairs=pairs), seed)
    return (head, pairs, seed, s["exact_heldout_expected_accuracy"], s["exact_heldout_bayes_accuracy"],
            time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=HERE / "rm_data_scaling.png")
    args = ap.parse_args()

    from toyrlhf import stages
    from toyrlhf.plotting import save_figure, t_interval
    stages.cached_sft(stages.Pipeline())                 # build the SFT model once, before the workers read it

    jobs = [(h, n, s) for h in HEADS for n in PAIRS for s in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one_rm, jobs))
    acc = {(h, n, s): a for h, n, s, a, _, _ in results}
    ceiling = {(h, n, s): c for h, n, s, _, c, _ in results}
    secs = {(h, n, s): t for h, n, s, _, _, t in results}

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_gap) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = ["| head | pairs | exact held-out accuracy | exact ceiling | gap (points, 95% CI over seeds) | "
            "seconds per RM |", "|---|---:|---:|---:|---:|---:|"]
    colours = {"sequence": "tab:blue", "mean": "tab:orange"}
    for h in HEADS:
        a = np.array([[acc[h, n, s] for s in range(args.seeds)] for n in PAIRS])
        c = np.array([[ceiling[h, n, s] for s in range(args.seeds)] for n in PAIRS])
        gap = 100.0 * (c - a)
        mean_gap, half = zip(*(t_interval(g) for g in gap))
        acc_half = [t_interval(row)[1] for row in a]
        ax_acc.errorbar(PAIRS, a.mean(axis=1), yerr=np.nan_to_num(acc_half), fmt="o-", color=colours[h], capsize=3,
                        label=f"RM, head={h}")
        ax_gap.errorbar(PAIRS, mean_gap, yerr=np.nan_to_num(half), fmt="o-", color=colours[h], capsize=3,
                        label=f"head={h}")
        for i, n in enumerate(PAIRS):
            t = np.mean([secs[h, n, s] for s in range(args.seeds)])
            rows.append(f"| {h} | {n:,} | {a[i].mean():.4f} | {c[i].mean():.4f} | {mean_gap[i]:.2f} ± "
                        f"{half[i]:.2f} | {t:.1f} |")
    c_all = np.mean([ceiling["sequence", n, s] for n in PAIRS for s in range(args.seeds)])
    ax_acc.axhline(c_all, color="k", ls="--", lw=1, label="Bayes ceiling (exact)")
    ax_acc.axhline(0.5, color="grey", ls=":", lw=1)
    ax_gap.axhline(2.0, color="k", ls="--", lw=1, label="2 points")
    ax_gap.axhline(0.0, color="grey", ls=":", lw=1)
    for ax, title, ylabel in ((ax_acc, "held-out accuracy, exact over all pairs", "expected accuracy"),
                              (ax_gap, "gap to the Bayes ceiling", "points")):
        ax.set_xscale("log")
        ax.set_xlabel("preference pairs (train + held-out)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, loc="lower right" if ax is ax_acc else "upper right")
    fig.suptitle(f"reward model on pref: default settings, seed-0 SFT model, {args.seeds} seeds per point\n"
                 f"points: mean over the seeds; error bars (both panels): 95% Student-t interval over the seeds")
    fig.tight_layout()
    save_figure(fig, args.out)
    table = (f"# Reward-model accuracy against data (pref, {args.seeds} seeds per row, exact population figures)\n\n"
             + "\n".join(rows) + "\n\n± is the half-width of a 95% Student-t interval over seeds; accuracies are "
             "means over seeds.\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
