"""Rollout-training mismatch (issue 14 item 3): each correction's exact expected gradient against grad E_pi[r] as the
sampler's temperature moves away from the trainer's (toyrlhf/exact/mismatch.py). Writes plots/mismatch.md and
plots/mismatch.png. Run from outside the repo root: python /work/main/plots/mismatch.py [TASK]."""
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from toyrlhf import stages  # noqa: E402
from toyrlhf.exact import mismatch  # noqa: E402
from toyrlhf.tasks import get_task  # noqa: E402

task_name = sys.argv[1] if len(sys.argv) > 1 else "arith"
task = get_task(task_name)
policy, _ = stages.cached_sft(stages.Pipeline(stages.PretrainConfig(task=task_name)))
temps = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0)
rows = mismatch.mismatch_table(policy, task, lambda e: task.gold_reward(*e.split()), temperatures=temps)
out = Path(__file__).parent
(out / "mismatch.md").write_text(f"Task {task_name}, SFT policy, trainer temperature 1, C = 2, mask [0.5, 2], "
                                 f"gold reward, A = r - E_mu[r|q]\n\n" + mismatch.format_table(rows) + "\n")
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for kind in mismatch.CORRECTIONS:
    sel = [m for m in rows if m.correction == kind]
    x = [m.tv for m in sel]
    for ax, key in zip(axes, ("bias", "cosine", "std_along")):
        ax.plot(x, [getattr(m, key) for m in sel], marker="o", label=kind)
for ax, title in zip(axes, ("relative bias |E f - g| / |g|", "cosine(E f, g)", "one-sample std along g, / |g|")):
    ax.set_title(title)
    ax.set_xlabel("mean TV(pi, mu) (sampler temperature 1 .. 2)")
axes[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(out / "mismatch.png", dpi=120)
print(mismatch.format_table(rows))
