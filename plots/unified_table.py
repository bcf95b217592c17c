"""The unified-paradigm comparison table (docs/unified_paradigm.md), from a `toyrlhf compare` folder.

    python plots/unified_table.py COMPARE_DIR --out plots/unified_TASK.md [--figure plots/unified_TASK.png]
    (plots/unified_paradigm.sh runs it)

Appends to compare's own table (final gold reward with its 95% seed interval) the columns that separate the methods
before they saturate: the gold reward at steps 50 and 100 and, on verifiable tasks, the final accuracy, each with
the half-width of a 95% Student-t interval over seeds; the starting point (step 1, the SFT model's samples) and the
matched budget in the caption. --figure: gold reward and KL against step, the mean of the seeds with a 95%
Student-t band, one colour per method, offline methods dashed (compare's own comparison.png reuses colours past
five curves). Reads only the runs' metrics.jsonl / config.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

METHODS = ("sft", "rft", "online_rft", "dpo", "online_dpo", "ppo", "grpo")
DATA = {"sft": "offline: fresh demonstrations", "rft": "offline: π_sft samples, drawn once",
        "online_rft": "online", "dpo": "offline: the RM stage's pairs", "online_dpo": "online", "ppo": "online",
        "grpo": "online"}
WINDOW = 5
"""Steps averaged either side of a checkpoint step (steps s-4 .. s+5 for 'at step s')."""


def ci(x):
    x = np.asarray(x, float)
    h = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return float(x.mean()), float(h)


def fmt(mh, d=3):
    m, h = mh
    return f"{m:.{d}f}" if not np.isfinite(h) else f"{m:.{d}f} ± {h:.{d}f}"


def read(run: Path):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def at(metrics, key, step):
    vals = [m[key] for m in metrics if step - WINDOW < m["step"] <= step + WINDOW]
    return float(np.mean(vals))


def final(metrics, key):
    n = max(1, min(25, len(metrics) // 5))
    return float(np.mean([m[key] for m in metrics[-n:]]))


def figure(curves: dict, path: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colours = plt.get_cmap("tab10").colors
    for (m, ms), c in zip(curves.items(), colours):
        for ax, key in zip(axes, ("gold_reward", "kl")):
            y = np.array([[x[key] for x in run] for run in ms])
            k = 10
            y = np.array([np.convolve(r, np.ones(k) / k, mode="valid") for r in y])
            steps = np.arange(k, y.shape[1] + k)
            mean = y.mean(axis=0)
            half = stats.t.ppf(0.975, len(y) - 1) * y.std(axis=0, ddof=1) / np.sqrt(len(y))
            ls = "-" if DATA.get(m, "online").startswith("online") else "--"
            ax.plot(steps, mean, ls, color=c, lw=1.6, label=f"{m} ({'online' if ls == '-' else 'offline'})")
            ax.fill_between(steps, mean - half, mean + half, color=c, alpha=0.15, lw=0)
    axes[0].set(xlabel="step", ylabel="gold reward", title="gold reward (samples of the current policy)")
    axes[1].set(xlabel="step", ylabel="nats / sequence", title="KL(π ‖ π_sft)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2)
    fig.suptitle(title + " · mean of seeds, 95% t band · moving average over 10 steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--figure", type=Path)
    a = ap.parse_args()
    runs = {m: sorted(a.runs.glob(f"{m}-s*")) for m in METHODS}
    runs = {m: r for m, r in runs.items() if r}
    cfg = json.loads(next(iter(runs.values()))[0].joinpath("config.json").read_text())
    task, P, G = cfg["task"], cfg["prompts_per_step"], cfg["group_size"]
    verifiable = "accuracy" in read(next(iter(runs.values()))[0])[0]
    rows, start, curves = [], [], {}
    for m, folders in runs.items():
        ms = curves[m] = [read(f) for f in folders]
        steps = len(ms[0])
        start += [x[0]["gold_reward"] for x in ms]
        row = [m, DATA.get(m, ""), str(len(ms)), fmt(ci([at(x, "gold_reward", 50) for x in ms])),
               fmt(ci([at(x, "gold_reward", 100) for x in ms])), fmt(ci([final(x, "gold_reward") for x in ms]))]
        if verifiable:
            row.append(fmt(ci([final(x, "accuracy") for x in ms])))
        row.append(f"{np.mean([final(x, 'kl') for x in ms]):.3f}")
        rows.append(row)
    n_seeds = len(next(iter(runs.values())))
    head = ["method", "data", "seeds", "gold at step 50", "gold at step 100", f"final gold (step {steps})"]
    if verifiable:
        head.append("final accuracy")
    head.append("final KL (nats / seq.)")
    compare_md = a.runs / "comparison.md"
    out = compare_md.read_text().rstrip() + "\n\n" if compare_md.is_file() else ""
    out += (f"Per step, every method trains on B = {P} prompts × G = {G} = {P * G} completions and no method sees "
            f"more: online methods (online_rft, online_dpo, ppo, grpo) sample them from the current policy "
            f"(ppo takes 4 epochs × 4 minibatches over them, the others one step), offline ones draw {P * G} rows "
            f"(sft, rft) or {P * G // 2} pairs (dpo) of their fixed data with replacement; every method also logs "
            f"the metrics below off {P * G} samples of the current policy (online: its training batch). "
            f"{task}, {n_seeds} seeds × {steps} steps"
            f"{', the full default budget (nothing reduced)' if (n_seeds, steps) == (5, 500) else ', REDUCED from 5 × 500'}"
            f"; all methods start from the same SFT model per seed (step-1 gold reward "
            f"{np.mean(start):.3f}). 'at step s' = mean over steps s−{WINDOW - 1}..s+{WINDOW}; final = last 25 steps; "
            f"± = 95% Student-t half-width over seeds.\n\n")
    out += "| " + " | ".join(head) + " |\n|" + "---|" * 3 + "---:|" * (len(head) - 3) + "\n"
    out += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    a.out.write_text(out)
    if a.figure:
        figure(curves, a.figure, f"{task} · {len(next(iter(runs.values())))} seeds × {steps} steps · "
                                 f"{P * G} completions per step for every method")
    print(out)


if __name__ == "__main__":
    main()
