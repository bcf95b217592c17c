"""Learning curves, seed bands and algorithm comparisons, drawn from run folders (config.json + metrics.jsonl).

    plot_run_curves(run_dir, out)                  one run, a small panel per metric (train() writes it as curves.png)
    plot_runs(run_dirs, metrics, out, smooth=K)    runs grouped by algorithm: mean over seeds, 95% bootstrap band
    plot_runs(run_dirs, None, out, frontier=True)  training and gold reward against sqrt(KL) (Gao et al. 2022)
    comparison_table(run_dirs) -> rows             final gold reward (mean, 95% t-interval over seeds), KL, wall time
    table_markdown(rows), table_csv(rows)

Matplotlib is used through `Figure` objects and the Agg canvas only (no pyplot): nothing global is left behind, and
it works in worker processes without a display. The output format follows the file extension (.png, .svg, .pdf);
files are written atomically and deterministically (fixed bootstrap seed, no dates in SVG/PDF metadata).
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import UserError
from .runs import atomic_write_bytes, read_json, read_metrics

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
DEFAULT_METRICS = ("gold_reward", "reward", "kl", "entropy", "response_length")
COMPARE_METRICS = ("gold_reward", "reward", "kl", "response_length")
RUN_CURVE_METRICS = ("reward", "gold_reward", "kl", "entropy", "response_length", "clip_fraction",
                     "explained_variance", "accuracy")
BOOTSTRAP_SEED = 0
BOOTSTRAP_SAMPLES = 2000
LEVEL = 0.95

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
}

# one colour per preset everywhere (tab10), so grpo is the same colour in every figure
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
_PRESET_ORDER = ("ppo", "grpo", "dr_grpo", "dapo", "rloo", "reinforce", "gspo")

_RC = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11, "ytick.labelsize": 11,
       "legend.fontsize": 11, "figure.titlesize": 14, "axes.grid": True, "grid.alpha": 0.3,
       "axes.spines.top": False, "axes.spines.right": False, "svg.hashsalt": "toyrlhf", "svg.fonttype": "none"}


def metric_label(key: str) -> tuple[str, str]:
    """(panel title, y-axis label) of a metric; exact_* metrics reuse their estimator's label."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    if key.startswith("exact_") and key[6:] in METRIC_LABELS:
        title, unit = METRIC_LABELS[key[6:]]
        return f"{title} (exact)", unit
    return key.replace("_", " "), key


# ------------------------------------------------------------------------------------------ loading
@dataclass
class Run:
    """One run folder: its resolved config (possibly empty) and per-step metrics."""

    path: Path
    config: dict
    rows: list[dict]

    @property
    def algo(self) -> str:
        return str(self.config.get("algo", "?"))

    @property
    def task(self) -> str:
        return str(self.config.get("task", "?"))

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def steps(self) -> int:
        """Planned steps (config.json), or the last logged step."""
        last = int(self.rows[-1].get("step", len(self.rows))) if self.rows else 0
        return int(self.config.get("steps", last) or last)

    def metrics(self) -> list[str]:
        """Numeric metrics with at least one finite value (without `step`)."""
        out = set()
        for r in self.rows:
            for k, v in r.items():
                if k != "step" and _is_number(v) and math.isfinite(v):
                    out.add(k)
        return sorted(out)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) with NaN where the metric is missing or None."""
        steps = np.array([r.get("step", i + 1) for i, r in enumerate(self.rows)], dtype=np.float64)
        vals = np.array([r.get(key) if _is_number(r.get(key)) else np.nan for r in self.rows], dtype=np.float64)
        return steps, vals


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_run(run_dir) -> Run:
    """A run folder; a folder without metrics.jsonl, or with no step logged, is a UserError."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder")
    if not (path / "metrics.jsonl").is_file():
        hint = ""
        if any((p / "metrics.jsonl").is_file() for p in path.iterdir() if p.is_dir()):
            hint = f" (it holds run folders: pass them, e.g. {path}/*/)"
        raise UserError(f"{path}: no metrics.jsonl, not a run folder{hint}")
    rows = read_metrics(path)
    if not rows:
        raise UserError(f"{path}: metrics.jsonl has no steps yet")
    for i, r in enumerate(rows, 1):
        if type(r.get("step")) is not int:   # {"step": true} is not step 1
            raise UserError(f"{path / 'metrics.jsonl'}: record {i} has no integer step")
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    if not isinstance(config, dict):
        raise UserError(f"{path / 'config.json'}: expected a table of settings")
    return Run(path, config, rows)


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by algorithm (by 'algo · task' when the runs span several tasks), in order of appearance."""
    several_tasks = len({r.task for r in runs}) > 1
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(f"{r.algo} · {r.task}" if several_tasks else r.algo, []).append(r)
    return groups


def available_metrics(runs: Sequence[Run]) -> list[str]:
    return sorted(set().union(*(r.metrics() for r in runs)))


def check_metrics(runs: Sequence[Run], metrics: Iterable[str]) -> list[str]:
    available = available_metrics(runs)
    out = []
    for m in metrics:
        if m not in available:
            raise UserError(f"unknown metric {m!r}; available: {', '.join(available)}")
        if m not in out:
            out.append(m)
    return out


# ------------------------------------------------------------------------------------------ statistics
def smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average over k points (the window shrinks at the ends), ignoring NaN; k <= 1 is a copy.
    Centred, so a smoothed curve does not lag the raw one."""
    y = np.asarray(y, dtype=np.float64)
    if k <= 1 or y.size == 0:
        return y.copy()
    finite = np.isfinite(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    i = np.arange(y.size)
    lo = np.maximum(i - (k - 1) // 2, 0)
    hi = np.minimum(i + k // 2 + 1, y.size)
    cnt = ccnt[hi] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[hi] - csum[lo]) / cnt
    out[cnt == 0] = np.nan
    return out


def bootstrap_band(values, level: float = LEVEL, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED):
    """Mean over seeds and a percentile-bootstrap confidence band for it, per step.

    values: (n_seeds, n_steps), NaN where a seed has no value. Seeds are resampled with replacement (one resample
    index set shared by all steps, so the band is smooth along the curve); the generator is seeded, so the same input
    always gives the same band. Returns (mean, lo, hi); lo and hi are NaN at steps with fewer than 2 seeds (one seed
    gives no band)."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    S, T = v.shape
    finite = np.isfinite(v)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(finite, v, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    lo = np.full(T, np.nan)
    hi = np.full(T, np.nan)
    if S < 2 or not (n >= 2).any():
        return mean, lo, hi
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(S, np.full(S, 1.0 / S), size=n_boot).astype(np.float64)   # (B, S)
    num = counts @ np.where(finite, v, 0.0)
    den = counts @ finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.where(den > 0, num / den, np.nan)                                       # (B, T)
    ok = n >= 2
    alpha = (1.0 - level) / 2.0
    q = np.nanquantile(boot[:, ok], [alpha, 1.0 - alpha], axis=0)
    lo[ok], hi[ok] = q[0], q[1]
    return mean, lo, hi


def t_interval(x, level: float = LEVEL) -> tuple[float, float]:
    """(mean, half-width) of a Student-t confidence interval over seeds; half-width NaN for fewer than 2 values."""
    from scipy import stats
    x = np.asarray([v for v in x if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size < 2:
        return float(x.mean()), math.nan
    se = x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * se)


def aligned(runs: Sequence[Run], key: str, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values (n_runs, n_steps)) on the union of the runs' steps, each run smoothed over k steps first."""
    series = [r.series(key) for r in runs]
    grid = np.unique(np.concatenate([s for s, _ in series]))
    out = np.full((len(runs), grid.size), np.nan)
    for i, (s, v) in enumerate(series):
        out[i, np.searchsorted(grid, s)] = smooth(v, k)
    return grid, out


# ------------------------------------------------------------------------------------------ drawing
def colour_for(name: str, names: Sequence[str]) -> str:
    algo = name.split(" · ")[0]
    if algo in _PRESET_ORDER and len(names) <= len(_PALETTE):
        return _PALETTE[_PRESET_ORDER.index(algo)]
    return _PALETTE[list(names).index(name) % len(_PALETTE)]


def _grid_shape(n: int) -> tuple[int, int]:
    if n <= 3:
        return 1, n
    if n == 4:
        return 2, 2
    if n <= 6:
        return 2, 3
    if n <= 8:
        return 2, 4
    return math.ceil(n / 3), 3


def _new_figure(n_panels: int, panel_w: float, panel_h: float):
    from matplotlib.figure import Figure
    rows, cols = _grid_shape(n_panels)
    fig = Figure(figsize=(panel_w * cols, panel_h * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def _tidy(ax, key: str = "") -> None:
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
        pad = max(0.05 * abs(c), 0.05)
        ax.set_ylim(c - pad, c + pad)


def _steps_text(runs: Sequence[Run]) -> str:
    steps = sorted({r.steps for r in runs})
    return f"{steps[0]} steps" if len(steps) == 1 else f"{steps[0]}–{steps[-1]} steps"


def _tasks_text(runs: Sequence[Run]) -> str:
    tasks = list(dict.fromkeys(r.task for r in runs))
    return ("task " if len(tasks) == 1 else "tasks ") + ", ".join(tasks)


def _seed_text(groups: dict[str, list[Run]]) -> str:
    ns = sorted({len(g) for g in groups.values()})
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    if ns[-1] < 2:
        return "1 seed each"
    return f"mean of {n} seeds, {LEVEL:.0%} bootstrap band"


def save_figure(fig, out) -> Path:
    """Write `fig` to `out` (format from the extension) atomically; creates the parent folder."""
    out = Path(out)
    fmt = output_format(out)
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    buf = io.BytesIO()
    import matplotlib
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format=fmt, dpi=150, metadata=metadata)
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


def run_curves_figure(run: Run):
    """The per-run figure: one small panel per learning curve present in the run."""
    import matplotlib
    have = set(run.metrics())
    keys = [k for k in RUN_CURVE_METRICS if k in have]
    if not keys:
        keys = sorted(have)[:6] or ["step"]
    with matplotlib.rc_context(_RC):
        fig, axes = _new_figure(len(keys), 4.2, 3.0)
        n = len(run.rows)
        k = max(1, n // 20) if n >= 40 else 1
        colour = colour_for(run.algo, [run.algo])
        for ax, key in zip(axes, keys):
            steps, vals = run.series(key)
            title, unit = metric_label(key)
            if k > 1:
                ax.plot(steps, vals, color=colour, alpha=0.3, lw=1)
                ax.plot(steps, smooth(vals, k), color=colour, lw=2)
            else:
                ax.plot(steps, vals, color=colour, lw=2, marker="o" if n < 15 else None)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            _tidy(ax, key)
        seed = f" · seed {run.seed}" if run.seed is not None else ""
        smooth_txt = f" · bold: moving average over {k} steps" if k > 1 else ""
        fig.suptitle(f"{run.algo} on {run.task}{seed} · {_steps_text([run])}{smooth_txt}")
    return fig


def rm_curves_figure(records: Sequence[dict], summary: dict):
    """Learning curves of a reward-model stage: BT loss and accuracy against step, minibatch (faint, with a moving
    average) and held-out (points), against the Bayes loss floor and accuracy ceiling of the held-out pairs."""
    import matplotlib
    steps = np.array([r["step"] for r in records], dtype=np.float64)
    ev = [r for r in records if "heldout_loss" in r]
    k = max(1, len(records) // 25)
    with matplotlib.rc_context(_RC):
        fig, axes = _new_figure(2, 5.4, 3.9)
        for ax, key, ho_key, floor_key, floor_name, title, unit in (
                (axes[0], "loss", "heldout_loss", "heldout_bayes_loss", "Bayes loss floor", "Bradley-Terry loss",
                 "nats / pair"),
                (axes[1], "acc", "heldout_expected_accuracy", "bayes_accuracy", "Bayes ceiling", "accuracy",
                 "fraction of pairs")):
            vals = np.array([r[key] for r in records], dtype=np.float64)
            ax.plot(steps, vals, color="tab:blue", alpha=0.25, lw=1)
            ax.plot(steps, smooth(vals, k), color="tab:blue", lw=2, label=f"train minibatch (moving average, {k})")
            if ev:
                ax.plot([r["step"] for r in ev], [r[ho_key] for r in ev], "o-", color="tab:orange", lw=2,
                        label="held-out" + (" (expected over the labels)" if key == "acc" else ""))
            if summary.get(floor_key) is not None:
                ax.axhline(summary[floor_key], color="k", ls="--", lw=1, label=f"{floor_name} (held-out pairs)")
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            ax.legend(frameon=False, fontsize=9)
            _tidy(ax)
        head = summary.get("head", "")
        fig.suptitle(f"reward model on {summary.get('task', '?')} · head {head} · seed {summary.get('seed', '?')} · "
                     f"{summary.get('n_train_pairs', '?')} training pairs")
    return fig


def plot_run_curves(run_dir, out) -> Path:
    """A run's learning curves (reward, gold reward, KL, entropy, response length, and clip fraction, explained
    variance, accuracy when the run logs them), one small panel each, titled with algorithm, task and steps."""
    output_format(out)
    return save_figure(run_curves_figure(load_run(run_dir)), out)


def runs_figure(runs: Sequence[Run], metrics: Sequence[str], smooth_k: int = 1):
    """Curves against step, one panel per metric, one line per algorithm: mean over its seeds, with a 95%
    bootstrap band over seeds when it has at least 2."""
    import matplotlib
    groups = group_runs(runs)
    names = list(groups)
    with matplotlib.rc_context(_RC):
        fig, axes = _new_figure(len(metrics), 5.4, 3.9)
        for ax, key in zip(axes, metrics):
            for name, group in groups.items():
                steps, vals = aligned(group, key, smooth_k)
                if not np.isfinite(vals).any():
                    continue
                mean, lo, hi = bootstrap_band(vals)
                colour = colour_for(name, names)
                label = f"{name} ({len(group)} seed{'s' if len(group) != 1 else ''})"
                ax.plot(steps, mean, color=colour, lw=2.2, label=label, marker="o" if steps.size < 15 else None)
                if np.isfinite(lo).any():
                    ax.fill_between(steps, lo, hi, color=colour, alpha=0.2, lw=0)
            title, unit = metric_label(key)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(unit)
            _tidy(ax, key)
        _legend(fig, axes)
        smooth_txt = f" · moving average over {smooth_k} steps" if smooth_k > 1 else ""
        fig.suptitle(f"{_tasks_text(runs)} · {_steps_text(runs)} · {_seed_text(groups)}{smooth_txt}")
    return fig


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


def binned_means(x: np.ndarray, y: np.ndarray, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Means of x and y in equal-count bins of x (sorted): the curve y(x) through a cloud of points."""
    if x.size == 0:
        return x, y
    n_bins = n_bins or int(np.clip(x.size // 10, 1, 15))
    order = np.argsort(x, kind="stable")
    chunks = [c for c in np.array_split(order, min(n_bins, x.size)) if c.size]
    return np.array([x[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks])


def frontier_figure(runs: Sequence[Run], smooth_k: int = 1):
    """Training (proxy) reward and gold reward against sqrt(KL(pi || pi_ref)), as in Gao et al. 2022 (Scaling laws
    for reward model overoptimization, fig. 1): gold bending down while the proxy keeps rising is overoptimisation.
    Dots: every step of every seed; line: the mean in equal-count bins of sqrt(KL)."""
    import matplotlib
    groups = group_runs(runs)
    names = list(groups)
    with matplotlib.rc_context(_RC):
        fig, axes = _new_figure(2, 6.0, 4.4)
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
            _tidy(ax)
        _legend(fig, axes)
        smooth_txt = f", moving average over {smooth_k} steps" if smooth_k > 1 else ""
        fig.suptitle(f"reward vs. distance from the reference (Gao et al. 2022) · {_tasks_text(runs)} · "
                     f"{_steps_text(runs)}\ndots: every step of every seed{smooth_txt}; line: mean in bins of √KL")
    return fig


def _legend(fig, axes) -> None:
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)


def plot_runs(run_dirs, metrics=None, out="plot.png", smooth: int = 1, frontier: bool = False) -> Path:
    """Curves of `metrics` (default: gold reward, reward, KL, entropy, response length) for the runs in `run_dirs`
    (run folders, or `Run`s already loaded), grouped by algorithm (config.json's "algo"), with a 95% bootstrap band
    over seeds; or, with `frontier`, training and gold reward against sqrt(KL). Format from `out`'s extension.
    Returns `out`."""
    output_format(out)
    if smooth < 1:
        raise UserError(f"smoothing window must be a positive integer, got {smooth}")
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise UserError("no run folders given")
    runs = [d if isinstance(d, Run) else load_run(d) for d in run_dirs]
    if frontier:
        check_metrics(runs, ("reward", "gold_reward", "kl"))
        return save_figure(frontier_figure(runs, smooth), out)
    if not metrics:
        have = available_metrics(runs)
        if not have:
            raise UserError(f"{runs[0].path}: metrics.jsonl has no numeric metric to plot")
        metrics = [m for m in DEFAULT_METRICS if m in have] or have[:len(DEFAULT_METRICS)]
    metrics = check_metrics(runs, metrics)
    return save_figure(runs_figure(runs, metrics, smooth), out)


# ------------------------------------------------------------------------------------------ tables
def final_value(run: Run, key: str):
    """Mean of `key` over the last max(1, min(25, steps // 5)) steps (the rule summary.json's final_* uses)."""
    rows = run.rows[-max(1, min(25, len(run.rows) // 5)):]
    vals = [r[key] for r in rows if _is_number(r.get(key)) and math.isfinite(r[key])]
    return float(np.mean(vals)) if vals else None


def wall_time(run: Run) -> float:
    path = run.path / "summary.json"
    if path.is_file():
        w = read_json(path).get("wall_time_s")
        if _is_number(w):
            return float(w)
    return float(sum(r.get("time_s", 0.0) or 0.0 for r in run.rows))


def comparison_table(run_dirs) -> list[dict]:
    """Per algorithm: seeds, final gold reward (mean and 95% Student-t interval over seeds), final training reward,
    KL and response length (means over seeds), wall time per run (mean) — one dict per algorithm."""
    runs = [r if isinstance(r, Run) else load_run(r) for r in run_dirs]
    out = []
    for name, group in group_runs(runs).items():
        gold, half = t_interval([final_value(r, "gold_reward") for r in group])

        def mean_of(key):
            vals = [v for v in (final_value(r, key) for r in group) if v is not None]
            return float(np.mean(vals)) if vals else math.nan

        out.append({"algo": name, "seeds": len(group), "steps": max(r.steps for r in group),
                    "final_gold_reward": gold, "final_gold_reward_ci95": half,
                    "final_gold_reward_lo": gold - half, "final_gold_reward_hi": gold + half,
                    "final_reward": mean_of("reward"), "final_kl": mean_of("kl"),
                    "final_response_length": mean_of("response_length"),
                    "wall_time_s": float(np.mean([wall_time(r) for r in group]))})
    return out


def _fmt(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def table_markdown(rows: list[dict]) -> str:
    head = ("| algorithm | seeds | final gold reward (95% CI) | final training reward | final KL (nats / sequence) | "
            "response length (tokens) | wall time per run (s) |\n|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['algo']} | {r['seeds']} | {_fmt(r['final_gold_reward'])}"
        f"{' ± ' + _fmt(r['final_gold_reward_ci95']) if math.isfinite(r['final_gold_reward_ci95']) else ''} | "
        f"{_fmt(r['final_reward'])} | {_fmt(r['final_kl'])} | {_fmt(r['final_response_length'], 2)} | "
        f"{_fmt(r['wall_time_s'], 1)} |\n" for r in rows)
    note = ("\nfinal = mean over each run's last max(1, min(25, steps // 5)) steps; ± is the half-width of a 95% "
            "Student-t interval over seeds (scipy.stats.t, n − 1 degrees of freedom; none for one seed); "
            "other columns are means over seeds.\n")
    return head + body + note


CSV_COLUMNS = ("algo", "seeds", "steps", "final_gold_reward", "final_gold_reward_ci95", "final_gold_reward_lo",
               "final_gold_reward_hi", "final_reward", "final_kl", "final_response_length", "wall_time_s")


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(["" if isinstance(r[c], float) and not math.isfinite(r[c]) else
                    (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def check_figure(report):
    """`toyrlhf check` as a picture: left, each KL estimator's Monte-Carlo mean (± 2 se) against the exact KL;
    right, the cosine between each estimator's exact expected gradient and the true gradient it is meant to follow."""
    import matplotlib
    with matplotlib.rc_context(_RC):
        fig, (ax_v, ax_g) = _new_figure_pair()
        values = [r for r in report.rows if r.section == "KL value"]
        names = [r.estimator.split(" (")[0] for r in values]
        y = np.arange(len(values))
        ax_v.errorbar([r.mc_mean for r in values], y, xerr=[2 * r.mc_se for r in values], fmt="o", color=_PALETTE[0],
                      capsize=4, label="Monte-Carlo mean ± 2 se")
        ax_v.axvline(values[0].exact if values else 0.0, color=_PALETTE[1], lw=2, label="exact KL(π ‖ π_ref)")
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
        colours = [_PALETTE[7] if z else _PALETTE[2] if c > 0.9999 else _PALETTE[3] if c > 0.9 else _PALETTE[1]
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
