"""`toyrlhf check` as a picture: KL estimators as values, and each estimator's exact expected gradient against
the gradient it should follow."""
from __future__ import annotations

import numpy as np

from .style import PALETTE, RC

def check_figure(report):
    """`toyrlhf check` as a picture: left, each KL estimator's Monte-Carlo mean (± 2 se) against the exact KL;
    right, the cosine between each estimator's exact expected gradient and the true gradient it is meant to follow."""
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
        cos = [0.0 if z else r.cos for r, z in zip(grads, zero)]
        colours = [PALETTE[7] if z else PALETTE[2] if c > 0.9999 else PALETTE[3] if c > 0.9 else PALETTE[1]
                   for c, z in zip(cos, zero)]
        ax_g.barh(y, cos, color=colours)
        for yi, r, c, z in zip(y, grads, cos, zero):
            text = "expected gradient = 0" if z else f"cos {c:.4f}, |E|/|∇| {r.ratio:.3g}"
            ax_g.text(0.02, yi, text, va="center", fontsize=10, color="white" if c > 0.3 else "black")
        ax_g.set_yticks(y, labels, fontsize=10)
        ax_g.invert_yaxis()
        ax_g.set_xlim(-0.25, 1.05)
        ax_g.set_xlabel("cosine(exact E[estimator gradient], true gradient)")
        ax_g.set_title("expected gradients vs the gradients they should follow")
        info = report.info
        fig.suptitle(f"toyrlhf check on task {info.get('task', '')}: exact engine vs estimators "
                     f"({info.get('samples', '')} Monte-Carlo draws)")
    return fig


def _new_figure_pair():
    from matplotlib.figure import Figure
    fig = Figure(figsize=(17, 8), layout="constrained")
    return fig, fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
