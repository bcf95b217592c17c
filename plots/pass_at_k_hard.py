"""RL sharpening on arith_hard (issue 16, item 4): exact pass@k of the SFT model against a GRPO run, k = 1 .. 256.

    python plots/pass_at_k_hard.py [RUN_DIR] [--steps 150]     (from any folder but the repo root)

Without RUN_DIR, runs `toyrlhf run grpo --task arith_hard --steps N` first. Writes plots/pass_at_k_hard.png (pass@k
over all prompts, the hard b = 4 prompts and the others, SFT against the run; maj@k over all prompts from
`toyrlhf eval`'s computation) and plots/pass_at_k_hard.md: per-prompt success probabilities, pass@k at a few k and
the crossover k (the smallest k from which the run's pass@k stays below the SFT model's), or its absence.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from toyrlhf import exact  # noqa: E402
from toyrlhf.rl.exact_eval import evaluate_policy, load_run  # noqa: E402
from toyrlhf.tasks import get_task  # noqa: E402

HERE = Path(__file__).resolve().parent
KS = np.arange(1, 257)


def success(policy, task, temperature):
    enum = exact.enumerate_task(policy, task, temperature)
    correct = task.is_correct(*enum.split()).astype(np.float64)
    return exact.expectation(enum, correct)[0]


def passk(p, ks=KS):
    return np.array([np.mean(1 - (1 - p) ** k) for k in ks])


def crossover(run, sft):
    below = run < sft - 1e-12
    if not below.any():
        return None
    idx = np.flatnonzero(~below)
    last_ok = idx.max() if len(idx) else -1
    return int(KS[last_ok + 1]) if last_ok + 1 < len(KS) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", type=Path)
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args()
    run = a.run
    if run is None:
        run = Path(tempfile.mkdtemp()) / "grpo-arith_hard"
        subprocess.run(["toyrlhf", "run", "grpo", "--task", "arith_hard", "--steps", str(a.steps), "--out", str(run)],
                       check=True)
    cfg, trainer, sft = load_run(run)
    task = get_task(cfg.task)
    hard = task.hard(task.prompts()) if hasattr(task, "hard") else np.zeros(len(task.prompts()), bool)
    ps = {"SFT": success(sft, task, cfg.temperature), "GRPO": success(trainer.models.policy, task, cfg.temperature)}
    maj = {"SFT": evaluate_policy(sft, task, cfg.temperature, (1, 4, 16, 64, 256)),
           "GRPO": evaluate_policy(trainer.models.policy, task, cfg.temperature, (1, 4, 16, 64, 256))}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True, layout="constrained")
    rows = [f"run: {cfg.algo if hasattr(cfg, 'algo') else 'grpo'} on {cfg.task}, {run}", "",
            "| prompts | model | mean p | min p | pass@1 | pass@16 | pass@64 | pass@256 | crossover k |",
            "|---|---|---|---|---|---|---|---|---|"]
    for ax, (label, sel) in zip(axes, (("all prompts", slice(None)), ("hard (b = 4)", hard), ("others", ~hard))):
        curves = {m: passk(p[sel]) for m, p in ps.items()}
        cross = crossover(curves["GRPO"], curves["SFT"])
        for m, c in curves.items():
            ax.plot(KS, c, "-" if m == "GRPO" else "--", label=f"pass@k {m}")
        if label == "all prompts":
            for m, e in maj.items():
                ax.plot(e.ks, e.maj_at_k, "o:" if m == "GRPO" else "s:", ms=3, label=f"maj@k {m}")
        if cross:
            ax.axvline(cross, color="r", lw=0.8, label=f"crossover k = {cross}")
        ax.set_xscale("log", base=2)
        ax.set_title(label)
        ax.set_xlabel("k")
        ax.legend(fontsize=7)
        for m, c in curves.items():
            p = ps[m][sel]
            rows.append(f"| {label} | {m} | {p.mean():.4f} | {p.min():.2e} | {c[0]:.3f} | {c[15]:.3f} | {c[63]:.3f} | "
                        f"{c[255]:.4f} | {cross if (m == 'GRPO' and cross) else ('none' if m == 'GRPO' else '')} |")
    axes[0].set_ylabel("exact pass@k / maj@k")
    fig.suptitle(f"SFT vs GRPO on {cfg.task}: does RL lose pass@k at large k? (exact)")
    fig.savefig(HERE / "pass_at_k_hard.png", dpi=120)
    (HERE / "pass_at_k_hard.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
