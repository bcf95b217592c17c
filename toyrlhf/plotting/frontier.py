"""Reward against sqrt(KL(pi || pi_ref)) (Gao et al. 2022): each algorithm's mean trajectory over seeds, every step
of every seed as light dots, and, when given, the exact optimal frontier of the runs' reference and reward."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .run_data import Run, group_runs, runs_text, seed_values, steps_text, tasks_text
from .stats import smooth
from .style import RC, legend, new_figure, style_for, tidy

FRONTIER_LABEL = "exact optimum π*"
GOLD_LABEL = "gold reward of π*"


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
            for variant, fronts in _by_reward(exact).items():
                drawn = _draw_frontiers(ax, fronts, "reward" if key == "reward" else "gold",
                                        FRONTIER_LABEL if key == "reward" else GOLD_LABEL,
                                        _variant_text(variant, exact, runs, groups))
                for fy_x, fy in drawn:
                    seen_y.append(fy[fy_x <= (x_max if x_max is not None else np.inf)])
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
            front_txt = ("\nblack: exact optimum π* = π_ref·exp(r/β)/Z (β sweep) of the runs' reference and "
                         "training reward r, and its gold reward" +
                         ("\n(thin: each seed's reference; bold: their mean)" if len(exact) > len(_by_reward(exact))
                          else ""))
        fig.suptitle(f"reward vs. distance from the reference (Gao et al. 2022) · {tasks_text(runs)} · "
                     f"{steps_text(runs)}\ncolour: mean over seeds at each step (marker: last step); dots: every "
                     f"step of every seed{smooth_txt}{front_txt}")
    return fig


def _by_reward(exact: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in exact:
        out.setdefault(f.get("reward_settings", ""), []).append(f)
    return out


def _variant_text(variant: str, exact: Sequence[dict], runs: Sequence[Run], groups: dict) -> str:
    """'' when every run shares one reward function; else the algorithms whose runs use this one."""
    if len(_by_reward(exact)) < 2:
        return ""
    paths = {p for f in exact if f.get("reward_settings", "") == variant for p in f["runs"]}
    names = [n for n, g in groups.items() if any(r.path in paths for r in g)]
    return f" ({', '.join(names)})" if len(names) <= 2 else " (the others)"


def _draw_frontiers(ax, fronts: Sequence[dict], key: str, label: str, suffix: str) -> list:
    """One reference: its exact sweep points. Several (one per seed): each thin, and bold their mean on a common
    sqrt(KL) grid (up to where every sweep reaches). Returns the drawn (x, y) arrays."""
    fronts = [f for f in fronts if f.get(key) is not None]
    if not fronts:
        return []
    if len(fronts) == 1:
        f = fronts[0]
        ax.plot(f["sqrt_kl"], f[key], color="black", lw=1.6, ls="-" if key == "reward" else "--", zorder=1,
                label=label + suffix)
        return [(np.asarray(f["sqrt_kl"]), np.asarray(f[key]))]
    drawn = []
    for f in fronts:
        ax.plot(f["sqrt_kl"], f[key], color="black", lw=0.6, alpha=0.3, ls="-" if key == "reward" else "--",
                zorder=1)
        drawn.append((np.asarray(f["sqrt_kl"]), np.asarray(f[key])))
    grid = np.linspace(0.0, min(float(np.max(f["sqrt_kl"])) for f in fronts), 200)
    mean = np.mean([np.interp(grid, f["sqrt_kl"], f[key]) for f in fronts], axis=0)
    ax.plot(grid, mean, color="black", lw=2.0, ls="-" if key == "reward" else "--", zorder=1,
            label=f"{label}, mean of {len(fronts)} refs{suffix}")
    return drawn + [(grid, mean)]
