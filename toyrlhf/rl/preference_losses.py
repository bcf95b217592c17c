"""Losses of the direct / supervised methods, with their exact gradients w.r.t. the per-token log-probs (pure NumPy).

Every function takes per-token arrays in the padded layout of ``toyrlhf/tokens.py`` (logp, ref_logp: (n, L), mask:
(n, L) bool on completion tokens) and returns the loss and dL/dlogp, which ``TinyLM.logp_backward`` chains to the
parameters. For a pair (y_w preferred to y_l) of one prompt x, with the sequence log-ratios

    Delta(y) = sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)] = log pi(y|x) - log pi_ref(y|x),
    u = Delta(y_w) - Delta(y_l)          (the implicit reward margin, divided by beta),

the pair losses (``PREFERENCE_LOSSES``) are

    sigmoid  DPO,  Rafailov et al. 2023, eq. 7:    l = -log sigma(beta u)                  dl/du = -beta sigma(-beta u)
    ipo      IPO,  Azar et al. 2023, eq. 17:       l = (u - 1/(2 beta))^2                  dl/du = 2 (u - 1/(2 beta))
    hinge    SLiC, Zhao et al. 2023 (calibration   l = max(0, 1 - beta u)                  dl/du = -beta [beta u < 1]
             loss, with the reference's log-ratio as in Rafailov et al. and Azar et al.)

and any of them takes the SFT regulariser of RPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization",
eq. 1): + alpha * NLL(y_w) / |y_w|. The batch loss is sum_i w_i l_i / n over the n pairs (w_i = 0 drops a pair, e.g. a
tie, without changing the denominator, so that a minibatch mean stays unbiased for the population loss). Then

    dL/dlogp_w[i, t] = (w_i/n) (dl/du - alpha/|y_w,i|) mask_w[i, t],     dL/dlogp_l[i, t] = -(w_i/n) dl/du mask_l[i, t].

The rejection-sampling loss (RFT, Yuan et al. 2023; DeepSeekMath §5.2.1: gradient coefficient I(o) = 1 on kept
samples) is ``nll_loss``: L = -(1/n) sum_i w_i (1/|o_i|) sum_t log pi(o_i,t), dL/dlogp = -(w_i / (n |o_i|)) mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["PairLoss", "PREFERENCE_LOSSES", "sequence_logratio", "preference_loss", "nll_loss", "pair_terms"]


@dataclass(frozen=True)
class PairLoss:
    name: str
    equation: str
    paper: str
    fn: Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]
    """(u (n,), beta) -> (l (n,), dl/du (n,))."""


def _sigmoid_loss(u, beta):
    z = beta * u
    loss = np.logaddexp(0.0, -z)                     # -log sigma(z), stable for both signs
    return loss, -beta * np.exp(-np.logaddexp(0.0, z))  # -beta sigma(-z)


def _ipo_loss(u, beta):
    d = u - 1.0 / (2.0 * beta)
    return d * d, 2.0 * d


def _hinge_loss(u, beta):
    z = 1.0 - beta * u
    return np.maximum(z, 0.0), np.where(z > 0, -beta, 0.0)


PREFERENCE_LOSSES: dict[str, PairLoss] = {p.name: p for p in [
    PairLoss("sigmoid", "-log sigma(beta u)", "Rafailov et al. 2023 (DPO)", _sigmoid_loss),
    PairLoss("ipo", "(u - 1/(2 beta))^2", "Azar et al. 2023 (IPO)", _ipo_loss),
    PairLoss("hinge", "max(0, 1 - beta u)", "Zhao et al. 2023 (SLiC-HF)", _hinge_loss),
]}
"""u = [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)]."""


def sequence_logratio(logp, ref_logp, mask) -> np.ndarray:
    """(n,) Delta(y) = sum_t mask (log pi - log pi_ref): the sequence log-ratio log pi(y|x) - log pi_ref(y|x)."""
    return np.where(mask, np.asarray(logp, np.float64) - np.asarray(ref_logp, np.float64), 0.0).sum(axis=1)


def pair_terms(logp_w, ref_w, mask_w, logp_l, ref_l, mask_l) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Delta(y_w), Delta(y_l), u = Delta(y_w) - Delta(y_l)), each (n,)."""
    dw = sequence_logratio(logp_w, ref_w, mask_w)
    dl = sequence_logratio(logp_l, ref_l, mask_l)
    return dw, dl, dw - dl


def preference_loss(logp_w, ref_w, mask_w, logp_l, ref_l, mask_l, *, loss: str = "sigmoid", beta: float = 0.1,
                    sft_coef: float = 0.0, weights=None) -> tuple[float, np.ndarray, np.ndarray, dict]:
    """The batch loss sum_i w_i [l(u_i) + alpha NLL(y_w,i)/|y_w,i|] / n of the pairs, its gradients w.r.t. the
    per-token log-probs of each side (dlogp_w, dlogp_l, both (n, L)), and statistics (means over the weighted pairs:
    chosen / rejected log-ratio, margin u, accuracy [u > 0])."""
    if loss not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown preference loss {loss!r}; choose from {', '.join(PREFERENCE_LOSSES)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    mask_w, mask_l = np.asarray(mask_w, bool), np.asarray(mask_l, bool)
    n = mask_w.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    dw, dl, u = pair_terms(logp_w, ref_w, mask_w, logp_l, ref_l, mask_l)
    per, dper = PREFERENCE_LOSSES[loss].fn(u, beta)
    len_w = np.maximum(mask_w.sum(axis=1), 1)
    nll_w = -np.where(mask_w, logp_w, 0.0).sum(axis=1) / len_w
    total = float(np.sum(w * (per + sft_coef * nll_w)) / max(n, 1))
    cw = (w / max(n, 1)) * (dper - sft_coef / len_w)
    cl = -(w / max(n, 1)) * dper
    dlogp_w = np.where(mask_w, cw[:, None], 0.0)
    dlogp_l = np.where(mask_l, cl[:, None], 0.0)
    used = w > 0
    stats = {"chosen_logratio": _wmean(dw, used), "rejected_logratio": _wmean(dl, used),
             "margin": _wmean(u, used), "pair_accuracy": _wmean((u > 0).astype(float), used),
             "pairs_used": float(used.mean()) if n else 0.0}
    return total, dlogp_w, dlogp_l, stats


def nll_loss(logp, mask, weights=None) -> tuple[float, np.ndarray]:
    """RFT's loss L = -(1/n) sum_i w_i (1/|o_i|) sum_t log pi(o_i,t) over the n rows (w_i = I(o_i kept)), and
    dL/dlogp (n, L). The fixed 1/n makes a minibatch mean unbiased for E[I(o) (1/|o|) grad log pi(o)]."""
    mask = np.asarray(mask, bool)
    n = mask.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    lens = np.maximum(mask.sum(axis=1), 1)
    c = w / (max(n, 1) * lens)
    loss = -float(np.sum(c * np.where(mask, logp, 0.0).sum(axis=1)))
    return loss, np.where(mask, -c[:, None], 0.0)


def _wmean(x, used) -> float | None:
    return float(x[used].mean()) if used.any() else None
