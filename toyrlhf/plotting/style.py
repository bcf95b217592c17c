"""The figures' shared look: metric titles and units, one colour per preset, panel grids, tidy axes, the legend
under the panels, and atomic, deterministic saving (format from the extension; no dates in SVG/PDF metadata).
Matplotlib is used through `Figure` objects and the Agg canvas only (no pyplot)."""
from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..runs import atomic_write_bytes

def _matplotlib_config_dir() -> None:
    """Give matplotlib a writable config/cache folder before it is first imported: under an unwritable HOME it
    would otherwise warn on two lines of stderr (breaking the one-line rule) and rebuild its font cache each run."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    default = os.path.join(base, "matplotlib")
    try:
        os.makedirs(default, exist_ok=True)
        if os.access(default, os.W_OK | os.X_OK):
            return
    except OSError:
        pass
    os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="toyrlhf-matplotlib-")


_matplotlib_config_dir()
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
PNG_COMPRESS_LEVEL = 3


# metric -> (panel title, y-axis label with its unit)
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "reward": ("training reward (RM or rule)", "reward"),
    "gold_reward": ("gold reward", "reward"),
    "kl": ("KL(π ‖ π_ref)", "nats / sequence"),
    "entropy": ("policy entropy", "nats / token"),
    "response_length": ("response length", "tokens"),
    "response_length_correct": ("response length, correct", "tokens"),
    "response_length_incorrect": ("response length, incorrect", "tokens"),
    "clip_fraction": ("clip fraction", "fraction of tokens"),
    "approx_kl": ("approx. KL(π_old ‖ π)", "nats / token"),
    "grad_norm": ("gradient norm (before clipping)", "L2 norm"),
    "loss": ("policy loss", "loss"),
    "value_loss": ("value loss", "squared error"),
    "explained_variance": ("critic explained variance", "1 − Var(R−V)/Var(R)"),
    "accuracy": ("accuracy", "fraction correct"),
    "frac_zero_std_groups": ("groups with equal rewards", "fraction of groups"),
    "truncated_fraction": ("truncated completions", "fraction"),
    "beta": ("KL coefficient β", "β"),
    "time_s": ("step time", "seconds"),
    "lr": ("learning rate", "lr"),
}

STAGE_METRIC_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "rm": {"loss": ("Bradley-Terry loss (minibatch)", "nats / pair"),
           "acc": ("pairwise accuracy (minibatch)", "fraction of pairs"),
           "heldout_loss": ("Bradley-Terry loss, held-out", "nats / pair"),
           "heldout_expected_accuracy": ("pairwise accuracy, held-out (expected)", "fraction of pairs")},
    "pretrain": {"loss": ("cross-entropy loss (next token)", "nats / token")},
    "sft": {"loss": ("cross-entropy loss (demonstrations)", "nats / token")},
}
"""The supervised stages log `loss` too: a reward model's is the Bradley-Terry loss, not the policy loss."""

FRACTION_METRICS = ("clip_fraction", "accuracy", "truncated_fraction", "frac_zero_std_groups", "acc")


# one colour per preset everywhere (tab10), so grpo is the same colour in every figure
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")

PRESET_ORDER = ("ppo", "grpo", "dr_grpo", "dapo", "rloo", "reinforce", "gspo")
PRESET_STYLES = {"ppo": ("-", "o"), "grpo": ("-", "s"), "dr_grpo": ("--", "^"), "dapo": ("-.", "D"),
                 "rloo": (":", "v"), "reinforce": ("--", "P"), "gspo": ("-.", "X")}
"""Line style and marker per preset, besides its colour: grpo (red, solid), reinforce (brown, dashed) and rloo
(purple, dotted) stay apart on a projector and in grey print."""
RC = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11, "ytick.labelsize": 11,
       "legend.fontsize": 11, "figure.titlesize": 14, "axes.grid": True, "grid.alpha": 0.3,
       "axes.spines.top": False, "axes.spines.right": False, "svg.hashsalt": "toyrlhf", "svg.fonttype": "none",
       "axes.titley": 1.0}
"""Font sizes for a projector, light grids, no top or right spine, SVG without random ids or font files.
`axes.titley` pins each panel title just above its axes: left automatic, matplotlib measures every tick label of
the panel again at each draw to see whether a title would collide with a top axis (these figures have none, so
the pixels are the same), a third of curves.png's drawing time."""


def metric_label(key: str, stage: str | None = None) -> tuple[str, str]:
    """(panel title, y-axis label) of a metric, for the runs of `stage` (rm, pretrain, sft, mixed; None: RL);
    exact_* metrics reuse their estimator's label."""
    if key in STAGE_METRIC_LABELS.get(stage or "", {}):
        return STAGE_METRIC_LABELS[stage][key]
    if stage == "mixed" and any(key in labels for labels in STAGE_METRIC_LABELS.values()):
        return key.replace("_", " "), key     # runs of several stages: their `loss` is not one quantity
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    if key.startswith("exact_") and key[6:] in METRIC_LABELS:
        title, unit = METRIC_LABELS[key[6:]]
        return f"{title} (exact)", unit
    return key.replace("_", " "), key


def style_for(name: str, names: Sequence[str]) -> dict:
    """Colour, line style and marker of curve `name` among `names`: a preset keeps its own (while the figure has at
    most 10 curves); any other curve takes the next colour, and past 10 curves the line style changes with each
    round of the palette, so no two of the first 40 curves share colour and line style."""
    algo = name.split(" · ")[0]
    if algo in PRESET_ORDER and len(names) <= len(PALETTE):
        ls, marker = PRESET_STYLES[algo]
        return {"color": PALETTE[PRESET_ORDER.index(algo)], "ls": ls, "marker": marker}
    j = list(names).index(name)
    return {"color": PALETTE[j % len(PALETTE)], "ls": LINESTYLES[(j // len(PALETTE)) % len(LINESTYLES)],
            "marker": MARKERS[j % len(MARKERS)]}


def colour_for(name: str, names: Sequence[str]) -> str:
    return style_for(name, names)["color"]


def grid_shape(n: int) -> tuple[int, int]:
    if n <= 3:
        return 1, n
    if n == 4:
        return 2, 2
    if n <= 6:
        return 2, 3
    if n <= 8:
        return 2, 4
    return math.ceil(n / 3), 3


FIXED_MARGINS = {"left": 0.9, "right": 0.25, "top": 1.0, "bottom": 0.6, "wspace": 0.85, "hspace": 0.9}
"""Inches around and between the panels of a `fixed` figure: the room for tick labels, axis labels, a two-line
suptitle and the panel titles at the RC font sizes."""


def new_figure(n_panels: int, panel_w: float, panel_h: float, fixed: bool = False, ticks: int | None = None):
    """A figure of n_panels panels of panel_w x panel_h inches on `grid_shape`'s grid. `fixed`: margins from
    FIXED_MARGINS instead of matplotlib's constrained layout, which draws the figure twice to measure every text
    (0.3 s of a run's 0.6 s curves.png); for figures whose texts are known to fit, with no legend under the panels.
    `ticks`: at most that many intervals between ticks on each axis (matplotlib's nice steps), instead of as many
    as the axis length allows (7 on a run's panels): every tick is several artists to lay out and draw."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    rows, cols = grid_shape(n_panels)
    fig = Figure(figsize=(panel_w * cols, panel_h * rows + 0.9), layout=None if fixed else "constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    if fixed:
        m, (w, h) = FIXED_MARGINS, fig.get_size_inches()
        inner_w = (w - m["left"] - m["right"] - m["wspace"] * (cols - 1)) / cols
        inner_h = (h - m["top"] - m["bottom"] - m["hspace"] * (rows - 1)) / rows
        fig.subplots_adjust(left=m["left"] / w, right=1 - m["right"] / w, top=1 - m["top"] / h,
                            bottom=m["bottom"] / h, wspace=m["wspace"] / inner_w, hspace=m["hspace"] / inner_h)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    if ticks is not None:
        for ax in axes[:n_panels]:
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(MaxNLocator(ticks, steps=[1, 2, 2.5, 5, 10]))
    return fig, list(axes[:n_panels])


def tidy(ax, key: str = "") -> None:
    """No offset notation ('1e-13+1e-1'), and a readable range for a flat curve (e.g. a constant clip fraction);
    explained variance is cut at -1 (a fresh critic starts far below and would squash the rest of the curve)."""
    ax.ticklabel_format(axis="y", useOffset=False)
    lo, hi = ax.dataLim.intervaly
    if key.endswith("explained_variance") and np.isfinite(lo) and lo < -1.0 < hi:
        ax.set_ylim(-1.0, max(1.0, hi) + 0.05)
        ax.set_title(ax.get_title() + " (cut at −1)")
        return
    if np.isfinite(lo) and np.isfinite(hi) and hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        c = 0.5 * (lo + hi)
        if key in FRACTION_METRICS and 0.0 <= c <= 1.0:   # a fraction stuck at 0 (or 1) is shown on [0, 1]
            ax.set_ylim(-0.02, 1.02)
            return
        pad = max(0.05 * abs(c), 0.05)
        ax.set_ylim(c - pad, c + pad)


def legend(fig, axes) -> None:
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)


def save_figure(fig, out, dpi: int = 150) -> Path:
    """Write `fig` to `out` (format from the extension; `dpi` for .png) atomically; creates the parent folder."""
    out = Path(out)
    fmt = output_format(out)
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    # zlib level 3 instead of PIL's 6: a 500-step curves.png encodes in 0.029 s instead of 0.043-0.051 s, 6% larger
    extra = {"pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}} if fmt == "png" else {}
    buf = io.BytesIO()
    import matplotlib
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata, **extra)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, buf.getvalue())
    except OSError as e:
        raise UserError(f"{out}: cannot write ({e.strerror})") from None
    return out


def output_format(out) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{out}: unsupported output format {suffix or '(no extension)'!r}; "
                        f"use {', '.join(FORMATS)}")
    return FORMATS[suffix]
