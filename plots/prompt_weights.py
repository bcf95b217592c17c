"""The per-prompt weight of every registered sequence-level advantage estimator for a 0/1 reward (issue 16, item 7).

    python plots/prompt_weights.py      (from any folder but the repo root; a few seconds, no model)

Writes plots/prompt_weights.png: w(p) p (1 - p) against the prompt's success probability p for G = 4, 8, 16, one
panel per G (w(p) = E[A | correct] - E[A | wrong], ``toyrlhf.exact.weights``; p (1 - p) is grad p for a
two-outcome softmax), with GRPO's large-G limit sqrt(p (1 - p)); and plots/prompt_weights.md, w(p) at a few p.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from toyrlhf.exact import weights as W  # noqa: E402

HERE = Path(__file__).resolve().parent
GS = (4, 8, 16)
TABLE_P = (0.01, 0.05, 0.2, 0.5)


def main():
    ps = np.linspace(0.0, 1.0, 201)
    fig, axes = plt.subplots(1, len(GS), figsize=(13, 4), sharey=True, layout="constrained")
    rows = ["| estimator | G | " + " | ".join(f"w({p})" for p in TABLE_P) + " |",
            "|---|---|" + "---|" * len(TABLE_P)]
    styles = ["-", "--", ":", "-."]
    for ax, G in zip(axes, GS):
        weights, skipped = W.estimator_weights(ps, G)
        seen = {}
        for i, (name, w) in enumerate(weights.items()):
            key = tuple(np.round(w * ps * (1 - ps), 6))
            label = name if key not in seen else None
            if key in seen:                                  # identical curve: add the name to the first label
                seen[key].set_label(seen[key].get_label() + ", " + name)
                continue
            (line,) = ax.plot(ps, w * ps * (1 - ps), styles[len(seen) % 4], label=label)
            seen[key] = line
        ax.plot(ps, np.sqrt(ps * (1 - ps)), "k:", lw=0.8, label="GRPO G→∞: √(p(1−p))")
        ax.set_title(f"G = {G}" + (f"  (skipped: {', '.join(skipped)})" if skipped else ""))
        ax.set_xlabel("prompt success probability p")
        ax.legend(fontsize=6)
        tw, _ = W.estimator_weights(np.array(TABLE_P), G)
        for name, w in tw.items():
            rows.append(f"| {name} | {G} | " + " | ".join(f"{x:.3f}" for x in w) + " |")
    axes[0].set_ylabel("w(p) · p(1−p)  (expected push on p)")
    fig.suptitle("Per-prompt weight of each advantage estimator, 0/1 reward (exact)")
    fig.savefig(HERE / "prompt_weights.png", dpi=120)
    (HERE / "prompt_weights.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
