"""The statistics behind the figures and tables: moving averages, the seed bootstrap band, the Student-t interval
over seeds and equal-count bins."""
from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
BOOTSTRAP_SEED = 0
BOOTSTRAP_SAMPLES = 2000


def smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Trailing moving average over the last k points (fewer at the start), ignoring NaN; k <= 1 is a copy.
    Trailing, so the smoothed value at step t uses steps <= t only: the curve starts at the first step's value (a
    centred window made PPO appear to start at its step-13 reward) and lags the raw one by (k - 1) / 2 steps."""
    y = np.asarray(y, dtype=np.float64)
    if k <= 1 or y.size == 0:
        return y.copy()
    finite = np.isfinite(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    i = np.arange(y.size)
    lo = np.maximum(i - k + 1, 0)
    hi = i + 1
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


def binned_means(x: np.ndarray, y: np.ndarray, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Means of x and y in equal-count bins of x (sorted): the curve y(x) through a cloud of points."""
    if x.size == 0:
        return x, y
    n_bins = n_bins or int(np.clip(x.size // 10, 1, 15))
    order = np.argsort(x, kind="stable")
    chunks = [c for c in np.array_split(order, min(n_bins, x.size)) if c.size]
    return np.array([x[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks])
