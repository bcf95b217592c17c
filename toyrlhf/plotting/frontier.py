"""Reward against sqrt(KL(pi || pi_ref)) (Gao et al. 2022): each algorithm's mean trajectory over seeds, every step
of every seed as light dots, and, when given, the exact optimal frontier of the runs' reference and reward."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .run_data import Run, group_runs, runs_text, seed_values, steps_text, tasks_text
from .stats import smooth
from .style import RC, legend, new_figure, style_for, tidy

FRONTIER_LABEL = "exact optimum π* = π_ref·exp(r/β)/Z (β sweep)"
GOLD_LABEL = "gold reward of π* (the optimum of the training reward)"


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


def mean_trajectory(runs: Sequence[Run], key: str, smooth_k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per step, the mean over seeds of sqrt(KL) and of `key` (each run smoothed first): the group's path through
    the (sqrt(KL), reward) plane, in step order."""
    _, kl = seed_values(runs, "kl", smooth_k)
    _, y = seed_values(runs, key, smooth_k)
    with np.errstate(invalid="ignore"):
        x = np.nanmean(np.sqrt(np.clip(kl, 0.0, None)), axis=0) if kl.size else kl
        y = np.nanmean(y, axis=0) if y.size else y
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def frontier_figure(runs: Sequence[Run], smooth_k: int = 1, exact: Sequence[dict] | None = None):
    """Training (proxy) reward and gold reward against sqrt(KL(pi || pi_ref)), as in Gao et al. 2022 (Scaling laws
    for reward model overoptimization, fig. 1): gold bending down while the proxy keeps rising is overoptimisation.
    Line: the mean over seeds at each step (a marker at the last step); light dots: every step of every seed.
    `exact`: frontiers from toyrlhf.rl.exact_frontier (dicts with sqrt_kl, reward, gold), drawn under the runs,
    one per distinct reference (a seed builds its own SFT model); the axes end a little past the runs."""
    import matplotlib
    groups = group_runs(runs)
    names = list(groups)
    exact = list(exact or [])
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(2, 6.4, 4.8)
        for ax, key in zip(axes, ("reward", "gold_reward")):
            seen_x, seen_y = [], []
            for name, group in groups.items():
                style = style_for(name, names)
                x, y = frontier_points(group, key, smooth_k)
                ax.scatter(x, y, s=4, color=style["color"], alpha=0.08, lw=0, rasterized=True)
                mx, my = mean_trajectory(group, key, smooth_k)
                ax.plot(mx, my, color=style["color"], ls=style["ls"], lw=2.2, label=f"{name} ({runs_text(group)})")
                if mx.size:
                    ax.plot(mx[-1:], my[-1:], color=style["color"], marker=style["marker"], ms=9, mec="white",
                            ls="none")
                seen_x += [x, mx]
                seen_y += [y, my]
            xs = np.concatenate(seen_x) if seen_x else np.zeros(0)
            x_max = 1.1 * float(xs.max()) if xs.size and xs.max() > 0 else None
            for i, front in enumerate(exact):
                fy = front["reward"] if key == "reward" else front.get("gold")
                if fy is None:
                    continue
                ax.plot(front["sqrt_kl"], fy, color="black", lw=1.4, ls="-" if key == "reward" else "--",
                        alpha=0.8, zorder=1, label=(FRONTIER_LABEL if key == "reward" else GOLD_LABEL) if i == 0
                        else None)
                inside = front["sqrt_kl"] <= (x_max if x_max is not None else np.inf)
                seen_y.append(np.asarray(fy)[inside])
            if x_max is not None and exact:
                ys = np.concatenate([np.ravel(v) for v in seen_y])
                ys = ys[np.isfinite(ys)]
                pad = 0.05 * max(float(ys.max() - ys.min()), 1e-6)
                ax.set_xlim(0.0, x_max)
                ax.set_ylim(float(ys.min()) - pad, float(ys.max()) + pad)
            ax.set_title("training reward (RM or rule)" if key == "reward" else "gold reward")
            ax.set_xlabel("√KL(π ‖ π_ref)   (√nats)")
            ax.set_ylabel("reward")
            tidy(ax)
        legend(fig, axes)
        smooth_txt = f", trailing mean over {smooth_k} steps" if smooth_k > 1 else ""
        front_txt = ""
        if exact:
            front_txt = (f"; black: exact optimal frontier{'s' if len(exact) > 1 else ''} of the runs' reference "
                         f"and training reward" + (f" (one per seed, {len(exact)})" if len(exact) > 1 else ""))
        fig.suptitle(f"reward vs. distance from the reference (Gao et al. 2022) · {tasks_text(runs)} · "
                     f"{steps_text(runs)}\nline: mean over seeds per step (marker: last step); dots: every step of "
                     f"every seed{smooth_txt}{front_txt}")
    return fig
