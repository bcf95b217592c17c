"""The rows of the `toyrlhf check` table and their verdicts: words computed from the exact cosines, norm ratios and
z-scores, never hard-coded outcomes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CheckRow", "CheckReport", "Z_MAX", "value_verdict", "gradient_verdict", "cosine", "cos_text", "unit"]


@dataclass
class CheckRow:
    """One estimator against one exact target. Value rows: `exact` is the target's value, `expected` the exact
    E[estimator], `mc_mean`/`mc_se` the Monte-Carlo mean of the estimator over the draws. Gradient rows: the same
    numbers projected on u = grad target / |grad target| (so `exact` = |grad target|), plus `cos` and `ratio`
    (|E[g]| / |grad target|) of the exact expected gradient E[g]."""

    section: str
    estimator: str
    target: str
    exact: float
    expected: float
    mc_mean: float
    mc_se: float
    cos: float | None = None
    ratio: float | None = None
    cos_mc: float | None = None
    verdict: str = ""

    @property
    def z(self) -> float:
        """(MC mean - exact target) / standard error: is the estimator unbiased for the target, at this N?"""
        return (self.mc_mean - self.exact) / self.mc_se if self.mc_se > 0 else float("nan")

    @property
    def z_expected(self) -> float:
        """(MC mean - exact E[estimator]) / standard error: does the real estimator code match the exact engine?"""
        return (self.mc_mean - self.expected) / self.mc_se if self.mc_se > 0 else float("nan")


@dataclass
class CheckReport:
    rows: list
    info: dict


Z_MAX = 4.0
"""|z| above this counts as a detected difference (two-sided p ~ 6e-5 per row)."""


def cosine(a, b) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def cos_text(c: float) -> str:
    return f"1-{1 - c:.1e}" if c > 0.9995 else f"{c:.3f}"


def _mc_note(row: CheckRow) -> str:
    return "" if abs(row.z_expected) <= Z_MAX else f"; MC differs from exact E (z {row.z_expected:+.1f})"


def value_verdict(row: CheckRow) -> str:
    """Words from the exact bias and the z-score (no hard-coded outcomes)."""
    bias = row.expected - row.exact
    if abs(bias) <= 1e-9 * max(1.0, abs(row.exact)):
        word = "unbiased" if abs(row.z) <= Z_MAX else f"unbiased, but MC z {row.z:+.1f}"
    else:
        rel = bias / abs(row.exact) if row.exact else float("inf")
        seen = "detected" if abs(row.z) > Z_MAX else "not detected at this N"
        word = f"biased {rel:+.0%} ({seen})"
    return word + _mc_note(row)


def gradient_verdict(row: CheckRow, other: tuple[str, float, float] | None = None,
                     constants: dict[str, float] | None = None) -> str:
    """Words from the exact cosine / norm ratio (and the z-score for detectability).

    other = (name, cos, ratio) of the same estimator against another target (KL rows: the other direction);
    constants = named factors to recognise in a norm ratio of a parallel gradient."""
    cos, ratio = row.cos, row.ratio

    def matches(c, r):
        return c > 1 - 1e-9 and abs(r - 1) < 1e-6

    if ratio < 1e-8:
        word = "zero expected gradient"
    elif matches(cos, ratio):
        word = "unbiased"
    elif other is not None and matches(other[1], other[2]):
        word = f"biased: follows {other[0]}"
    elif cos > 1 - 1e-9:
        name = next((k for k, c in (constants or {}).items() if abs(ratio / c - 1) < 1e-6), None)
        word = f"parallel, {name} x true" if name else f"parallel, x{ratio:.4g}"
        if abs(row.z) <= Z_MAX:
            word += " (scale not detected at this N)"
    else:
        word = f"not parallel (cos {cos_text(cos)})"
        if other is not None and other[1] > cos:
            word += f", closer to {other[0]} (cos {cos_text(other[1])})"
    return word + _mc_note(row)


def unit(v):
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
