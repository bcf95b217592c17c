"""Reward against sqrt(KL(pi || pi_ref)) (Gao et al. 2022): every step of every seed, and the binned mean."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .run_data import Run, group_runs, steps_text, tasks_text
from .stats import binned_means, smooth
from .style import RC, colour_for, legend, new_figure, tidy

def frontier_points(runs: Sequence[Run], key: str, smooth_k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All (sqrt(KL), reward) points of the runs, one per step and seed, each run smoothed over k steps first."""
    xs, ys = [], []
    for r in runs:
        _, kl = r.series("kl")
        _, y = r.series(key)
        x, y = np.sqrt(np.clip(smooth(kl, smooth_k), 0.0, None)), smooth(y, smooth_k)
        ok = np.isfinite(x) & np.isfinite(y)
        xs.append(x[ok])
        ys.append(y[ok])
    return np.concatenate(xs), np.concatenate(ys)


def frontier_figure(runs: Sequence[Run], smooth_k: int = 1):
    """Training (proxy) reward and gold reward against sqrt(KL(pi || pi_ref)), as in Gao et al. 2022 (Scaling laws
    for reward model overoptimization, fig. 1): gold bending down while the proxy keeps rising is overoptimisation.
    Dots: every step of every seed; line: the mean in equal-count bins of sqrt(KL)."""
    import matplotlib
    groups = group_runs(runs)
    names = list(groups)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(2, 6.0, 4.4)
        for ax, key in zip(axes, ("reward", "gold_reward")):
            for name, group in groups.items():
                colour = colour_for(name, names)
                x, y = frontier_points(group, key, smooth_k)
                ax.scatter(x, y, s=9, color=colour, alpha=0.25, lw=0)
                bx, by = binned_means(x, y)
                ax.plot(bx, by, color=colour, lw=2.4, marker="o", ms=5,
                        label=f"{name} ({len(group)} seed{'s' if len(group) != 1 else ''})")
            ax.set_title("training reward (RM or rule)" if key == "reward" else "gold reward")
            ax.set_xlabel("√KL(π ‖ π_ref)   (√nats)")
            ax.set_ylabel("reward")
            tidy(ax)
        legend(fig, axes)
        smooth_txt = f", moving average over {smooth_k} steps" if smooth_k > 1 else ""
        fig.suptitle(f"reward vs. distance from the reference (Gao et al. 2022) · {tasks_text(runs)} · "
                     f"{steps_text(runs)}\ndots: every step of every seed{smooth_txt}; line: mean in bins of √KL")
    return fig
