"""The entropy mechanism (Cui et al. 2025) on arith, exactly: a short GRPO run with --exact every few steps.

    python plots/entropy_mechanism.py [--steps 150] [--every 5] [--run RUN_DIR]   (from any folder but the repo root)

Runs `toyrlhf run grpo --task arith --exact` (unless --run names an existing run folder with exact_* metrics) and
writes plots/entropy_mechanism.png: (left) exact reward against exact sequence entropy with the least-squares fit
R = -a e^H + b; (right) per evaluation, the actual entropy change since the previous one against its first-order
prediction grad H . delta theta, and -Cov(log pi, c) (the tabular prediction per unit step). Prints a, b and the
correlations; plots/entropy_mechanism.md holds them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def records(run_dir: Path) -> list[dict]:
    path = next(p for p in (run_dir / "metrics.jsonl", *run_dir.glob("**/metrics.jsonl")) if p.exists())
    return [r for r in map(json.loads, path.read_text().splitlines()) if "exact_entropy" in r]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--run", type=Path)
    a = ap.parse_args()
    run = a.run
    if run is None:
        run = Path(tempfile.mkdtemp()) / "grpo-arith"
        subprocess.run(["toyrlhf", "run", "grpo", "--task", "arith", "--steps", str(a.steps), "--exact", "--set",
                        f"exact_every={a.every}", "--out", str(run)], check=True)
    rs = records(run)
    H = np.array([r["exact_entropy"] for r in rs])
    R = np.array([r["exact_reward"] for r in rs])
    X = np.stack([-np.exp(H), np.ones_like(H)], axis=1)
    (ca, cb), *_ = np.linalg.lstsq(X, R, rcond=None)
    fit = X @ np.array([ca, cb])
    r2 = 1 - ((R - fit) ** 2).sum() / ((R - R.mean()) ** 2).sum()
    ch = [(r["exact_entropy_change"], r["exact_entropy_change_first_order"], r["exact_entropy_change_cov"])
          for r in rs if "exact_entropy_change" in r]
    d, d1, dc = (np.array(v) for v in zip(*ch))
    corr1 = float(np.corrcoef(d, d1)[0, 1])
    corrc = float(np.corrcoef(d, dc)[0, 1])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax1.plot(H, R, "o", ms=3, label="GRPO run (exact, every %d steps)" % a.every)
    hs = np.linspace(H.min(), H.max(), 100)
    ax1.plot(hs, -ca * np.exp(hs) + cb, "k-", label=f"R = -{ca:.4f} e^H + {cb:.3f}  (R² = {r2:.3f})")
    ax1.set_xlabel("exact sequence entropy H (nats)")
    ax1.set_ylabel("exact reward")
    ax1.legend(fontsize=8)
    steps = np.array([r["step"] for r in rs if "exact_entropy_change" in r])
    ax2.plot(steps, d, "o-", ms=3, label="actual ΔH since previous evaluation")
    ax2.plot(steps, d1, "x--", ms=4, label=f"first order ∇H·Δθ (corr {corr1:.3f})")
    ax2b = ax2.twinx()
    ax2b.plot(steps, dc, "g:", label=f"−Cov(log π, c) per unit step (corr {corrc:.2f})")
    ax2b.set_ylabel("−Cov(log π, c)", color="g")
    ax2.set_xlabel("step")
    ax2.set_ylabel("entropy change")
    ax2.legend(fontsize=7, loc="lower left")
    ax2b.legend(fontsize=7, loc="lower right")
    fig.suptitle("Entropy mechanism (Cui et al. 2025), GRPO on arith, exact")
    fig.savefig(HERE / "entropy_mechanism.png", dpi=120)
    text = (f"fit R = -a e^H + b: a = {ca:.5f}, b = {cb:.4f}, R^2 = {r2:.4f} over {len(H)} evaluations; "
            f"H {H[0]:.3f} -> {H[-1]:.3f}, R {R[0]:.3f} -> {R[-1]:.3f}\n"
            f"corr(actual dH, first-order grad H . dtheta) = {corr1:.4f}; median |actual - first order| / |actual| = "
            f"{np.median(np.abs(d - d1) / np.maximum(np.abs(d), 1e-12)):.3f}\n"
            f"corr(actual dH, -Cov(log pi, c)) = {corrc:.3f}; share of evaluations with -Cov < 0: {np.mean(dc < 0):.2f}\n"
            f"run: {run}\n")
    (HERE / "entropy_mechanism.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
