"""`toyrlhf check` as a picture: KL estimators as values, and each estimator's exact expected gradient against
the gradient it should follow."""
from __future__ import annotations

import numpy as np

from .style import PALETTE, RC

FLOOR = 1e-16
"""1 - cos below this is float64 round-off of a cosine of 1: drawn at the floor."""
PARALLEL = 1e-4
"""The check table's 'parallel' threshold (cos > 0.9999)."""


def check_figure(report):
    """`toyrlhf check` as a picture: left, each KL estimator's Monte-Carlo mean (± 2 se) against the exact KL;
    right, 1 - the cosine between each estimator's exact expected gradient and the true gradient it is meant to
    follow, on a log axis (coloured by verdict, with a legend), so a slight bias such as GRPO's shows."""
    import matplotlib
    with matplotlib.rc_context(RC):
        fig, (ax_v, ax_g) = _new_figure_pair()
        values = [r for r in report.rows if r.section == "KL value"]
        names = [r.estimator.split(" (")[0] for r in values]
        y = np.arange(len(values))
        ax_v.errorbar([r.mc_mean for r in values], y, xerr=[2 * r.mc_se for r in values], fmt="o", color=PALETTE[0],
                      capsize=4, label="Monte-Carlo mean ± 2 se")
        ax_v.axvline(values[0].exact if values else 0.0, color=PALETTE[1], lw=2, label="exact KL(π ‖ π_ref)")
        ax_v.set_yticks(y, names)
        ax_v.set_xlabel("nats / sequence")
        ax_v.set_title("KL estimators as values")
        ax_v.set_ylim(len(values) - 0.4, -0.9)
        ax_v.legend(loc="upper center", ncols=1, fontsize=10)
        grads = [r for r in report.rows if r.section != "KL value" and r.cos is not None]
        labels = [f"{r.estimator} → {r.target}" for r in grads]
        y = np.arange(len(grads))
        zero = [r.ratio < 1e-8 for r in grads]         # E[gradient] = 0: its cosine is round-off, not a direction
        # 1 - cos on a log axis: cos 0.9957 (GRPO) and cos 1 - 1e-16 (RLOO) are three decades apart, not one pixel
        gap = [1.0 if z else max(1.0 - r.cos, FLOOR) for r, z in zip(grads, zero)]
        kinds = [("zero", PALETTE[7]) if z else ("parallel", PALETTE[2]) if g <= PARALLEL else
                 ("close", PALETTE[3]) if g < 0.1 else ("off", PALETTE[1]) for g, z in zip(gap, zero)]
        x = np.log10(gap)
        colours = [c for _, c in kinds]
        ax_g.hlines(y, np.log10(FLOOR), x, color=colours, lw=3)
        ax_g.scatter(x, y, s=90, color=colours, zorder=3, edgecolor="white")
        for xi, yi, r, z in zip(x, y, grads, zero):
            text = "expected gradient = 0" if z else f"cos {r.cos:.4f}, |E|/|∇| {r.ratio:.3g}"
            right = xi < -8                       # the text beside the marker, on the side with room
            ax_g.text(xi + 0.4 if right else xi - 0.4, yi - 0.32, text, va="center", ha="left" if right else "right",
                      fontsize=9.5)
        ax_g.set_yticks(y, labels, fontsize=10)
        ax_g.invert_yaxis()
        ax_g.set_xlim(np.log10(FLOOR) - 0.5, 0.5)
        ticks = np.arange(int(np.log10(FLOOR)), 1, 2)
        ax_g.set_xticks(ticks, [f"$10^{{{t}}}$" for t in ticks])
        ax_g.set_xlabel("1 − cosine(exact E[estimator gradient], true gradient)   (log; ≤ 1e-15 is round-off)")
        ax_g.set_title("expected gradients vs the gradients they should follow")
        from matplotlib.patches import Patch
        meaning = {"parallel": f"parallel (1 − cos ≤ {PARALLEL:g}): unbiased in direction",
                   "close": "1 − cos < 0.1: biased direction, close",
                   "off": "1 − cos ≥ 0.1: follows another gradient",
                   "zero": "expected gradient 0 (drawn at 1 − cos = 1)"}
        shown = dict.fromkeys(k for k, _ in kinds)
        colour = dict(kinds)
        ax_g.legend([Patch(color=colour[k]) for k in shown], [meaning[k] for k in shown], loc="upper center",
                    bbox_to_anchor=(0.5, -0.1), ncols=2, fontsize=10, frameon=False)
        info = report.info
        fig.suptitle(f"toyrlhf check on task {info.get('task', '')}: exact engine vs estimators "
                     f"({info.get('samples', '')} Monte-Carlo draws)")
    return fig


def _new_figure_pair():
    from matplotlib.figure import Figure
    fig = Figure(figsize=(17, 8), layout="constrained")
    return fig, fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
