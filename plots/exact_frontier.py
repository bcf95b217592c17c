"""The exact KL-regularised frontier (pi* = pi_ref exp(r/beta)/Z over a beta sweep) with best-of-n and runs under it.

    python plots/exact_frontier.py [RUN_DIR ...]     (from any folder but the repo root; TOYRLHF_CACHE_DIR as usual)

Writes plots/exact_frontier.png and plots/best_of_n.md (the best-of-n table). Uses the cached arith SFT model of the
default pipeline (the reward is arith's rule reward, so proxy = gold). Each RUN_DIR (an arith run) is drawn at its
final exact (sqrt KL, reward). Runs in a few seconds once the SFT model is cached.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from toyrlhf import exact  # noqa: E402
from toyrlhf.config import preset_config  # noqa: E402
from toyrlhf.rl.exact_eval import load_run  # noqa: E402
from toyrlhf.rl.trainer import Trainer, build_models  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(run_dirs):
    cfg = preset_config("grpo", task="arith")
    tr = Trainer(cfg, build_models(cfg))
    ref = exact.enumerate_task(tr.models.reference, tr.task)
    prompts, comps = ref.split()
    r = np.asarray(tr.reward_fn(ref.tokens, ref.mask, prompts, comps), np.float64)
    gold = tr.task.gold_reward(prompts, comps)
    front = exact.frontier(ref, r, np.geomspace(0.005, 50, 60), gold)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.plot(front["sqrt_kl"], front["reward"], "k-", label="exact optimum pi* (beta sweep)")
    rows = ["| n | KL(bon‖ref) | log n − (n−1)/n | √KL | reward | gold |", "|---|---|---|---|---|---|"]
    bon = []
    for n in (1, 2, 4, 8, 16, 32, 64):
        p = exact.best_of_n_point(ref, r, n, gold)
        bon.append(p)
        rows.append(f"| {n} | {p['kl']:.4f} | {p['kl_bound']:.4f} | {p['sqrt_kl']:.4f} | {p['reward']:.4f} | "
                    f"{p['gold']:.4f} |")
    ax.plot([p["sqrt_kl"] for p in bon], [p["reward"] for p in bon], "s--", color="C1", ms=4, label="best-of-n (exact)")
    for d in run_dirs:
        rcfg, rtr, _ = load_run(d)
        e = exact.enumerate_task(rtr.models.policy, rtr.task, rcfg.temperature)
        rr = exact.rescore(rtr.models.reference, e, rcfg.temperature)
        R = exact.expectation(e, r)[1]
        KL = exact.kl_divergences(e, rr)["reverse_mean"]
        ax.plot(np.sqrt(KL), R, "o", ms=6, label=f"{Path(d).name} (final, exact)")
    ax.set_xlabel("sqrt KL(pi || pi_ref)  (nats^0.5, mean over prompts)")
    ax.set_ylabel("E[reward]  (arith rule reward, max 1.2)")
    ax.set_xlim(0, max(3.0, ax.get_xlim()[1] if run_dirs else 3.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(HERE / "exact_frontier.png", dpi=150)
    (HERE / "best_of_n.md").write_text("Best-of-n from the arith SFT model, exact (ties shared at random):\n\n"
                                       + "\n".join(rows) + "\n")
    print("\n".join(rows))
    for b, k, rw in zip(front["beta"][::6], front["kl"][::6], front["reward"][::6]):
        print(f"beta {b:8.4f}  KL {k:.4f}  reward {rw:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
