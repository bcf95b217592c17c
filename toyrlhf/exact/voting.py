"""Exact maj@k (majority voting, "self-consistency", Wang et al. 2023; DeepSeekMath §5.1 reports maj@64) and
pass@k over an enumeration, for k up to 512.

Every completion has a final answer (an integer class) or none (-1: malformed, truncated, ...). maj@k draws k
completions i.i.d. from pi(.|q); the answers that were given most often win, **ties are broken uniformly at random**
among them (so a tie between the right answer and t others counts 1/(t+1)); completions without an answer do not
vote, and if none of the k has an answer the vote fails.

With class probabilities p_c (the right answer), p_i (the other answers) and p_0 (no answer), condition on the
right answer's count j >= 1: the vote is won iff every other answer has count <= j, with weight 1/(1+T), T the number
of other answers at exactly j. Writing 1/(1+T) = int_0^1 u^T du and the multinomial through exponential generating
functions,

    maj@k = sum_{j>=1} int_0^1 du  k! (p_c^j / j!) [x^{k-j}] e^{p_0 x} prod_i ( sum_{n<j} (p_i x)^n/n! + u (p_i x)^j/j! )

The u-integrand is a polynomial of degree <= (#other answers), so Gauss-Legendre quadrature with ceil((m+1)/2) nodes is
exact. The polynomials are multiplied by FFT, batched over j and the nodes, with x scaled by k so that no
coefficient under- or overflows for k <= 512 (the FFT's round-off is then ~1e-14 absolute).
"""
from __future__ import annotations

import numpy as np

from .. import special
from .enumeration import Enumeration
from .expectations import per_prompt

__all__ = ["MAX_K", "answer_distribution", "maj_at_k_from_probs", "maj_at_k", "pass_at_k_curve"]

MAX_K = 512
"""Largest k of ``maj_at_k`` (beyond it e^{k} overflows the scaled coefficients)."""


def answer_distribution(enum: Enumeration, answers: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_prompts, n_classes + 1) P(answer = a | q) for a = 0..n_classes-1, last column P(no answer), from the
    answer class of every row (-1 = none): sum_y pi(y|q) [answer(y) = a]."""
    a = np.asarray(answers, dtype=np.int64)
    if a.shape != (enum.n,):
        raise ValueError(f"answers must be ({enum.n},), got {a.shape}")
    if a.min() < -1 or a.max() >= n_classes:
        raise ValueError(f"answers must lie in -1..{n_classes - 1}")
    col = np.where(a < 0, n_classes, a)
    out = np.zeros((enum.n_prompts, n_classes + 1))
    np.add.at(out, (enum.prompt_index, col), enum.probs)
    return out


def _scaled_exp_coeffs(p: float, k: int) -> np.ndarray:
    """(k+1,) coefficients of e^{p k x} up to x^k: (p k)^n / n!, computed in log space (0 where p = 0, n > 0)."""
    n = np.arange(k + 1)
    if p <= 0:
        out = np.zeros(k + 1)
        out[0] = 1.0
        return out
    return np.exp(n * np.log(p * k) - special.gammaln(n + 1))


def maj_at_k_from_probs(p_right: float, p_others: np.ndarray, p_none: float, k: int) -> float:
    """maj@k of one prompt (module docstring formula) from its answer distribution: the right answer's probability,
    the other answers' (any number), and no answer's. Ties broken uniformly at random; no votes = a failed vote."""
    k = int(k)
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must lie in 1..{MAX_K}, got {k}")
    others = np.asarray([p for p in np.ravel(p_others) if p > 0], dtype=np.float64)
    if p_right <= 0:
        return 0.0
    m = len(others)
    nodes, weights = np.polynomial.legendre.leggauss(max(1, (m + 2) // 2))
    u, wu = 0.5 * (nodes + 1.0), 0.5 * weights                      # on [0, 1]
    L = 1
    while L < (m + 1) * (k + 1):
        L *= 2
    n = np.arange(k + 1)
    j = np.arange(k + 1)                                            # the right answer's count (j = 0 never wins)
    spec = np.fft.rfft(_scaled_exp_coeffs(p_none, k), L)[None, None, :]   # (1, 1, F)
    for p in others:
        c = _scaled_exp_coeffs(p, k)                                # (k+1,)
        below = np.where(n[None, :] < j[:, None], c[None, :], 0.0)   # (J, k+1): sum_{n<j}
        at = np.where(n[None, :] == j[:, None], c[None, :], 0.0)     # (J, k+1): the tie term n = j
        g = below[None, :, :] + u[:, None, None] * at[None, :, :]    # (U, J, k+1)
        spec = spec * np.fft.rfft(g, L, axis=-1)
    prod = np.fft.irfft(spec, L, axis=-1)[..., :k + 1]              # (U or 1, J, k+1)
    prod = np.broadcast_to(prod, (len(u), k + 1, k + 1))
    b = prod[:, j, k - j]                                           # [x^{k-j}] for every j: (U, J)
    a = _scaled_exp_coeffs(p_right, k)                              # (k p_c)^j / j!
    total = (wu @ b)[1:] @ a[1:]
    # undo the x -> k x scaling: k! / k^k
    return float(np.clip(total * np.exp(special.gammaln(k + 1) - k * np.log(k)), 0.0, 1.0))


def maj_at_k(enum: Enumeration, answers: np.ndarray, right: np.ndarray, n_classes: int, k: int
             ) -> tuple[np.ndarray, float]:
    """Exact maj@k per prompt and averaged uniformly: `answers` (N,) the final answer class of every row (-1 none),
    `right` (n_prompts,) the right answer of every prompt (ties at random; see the module docstring)."""
    dist = answer_distribution(enum, answers, n_classes)
    right = np.asarray(right, dtype=np.int64)
    per = np.empty(enum.n_prompts)
    for q in range(enum.n_prompts):
        others = np.delete(dist[q, :n_classes], right[q])
        per[q] = maj_at_k_from_probs(dist[q, right[q]], others, dist[q, n_classes], k)
    return per, float(per.mean())


def pass_at_k_curve(enum: Enumeration, correct: np.ndarray, ks) -> np.ndarray:
    """(len(ks),) prompt-averaged pass@k = mean_q [1 - (1 - p_q)^k], p_q = E_pi[correct | q] (Chen et al. 2021's
    quantity, exactly: no unbiased estimator from n samples needed)."""
    p = np.clip(per_prompt(enum, enum.probs * np.asarray(correct, dtype=np.float64)), 0.0, 1.0)
    return np.array([float(np.mean(1.0 - (1.0 - p) ** int(k))) for k in ks])
