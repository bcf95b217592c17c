"""Entropy-aware token selection for the policy-gradient loss (pure NumPy, float64), the knob ``token_mask``, and
the adaptive entropy coefficient (``entropy_target``).

* ``entropy_top``: Wang et al. 2025, "Beyond the 80/20 Rule: High-Entropy Minority Tokens Drive Effective RL for
  LLM Reasoning": only the top-rho fraction of the batch's tokens by entropy H_t of pi_old's next-token
  distribution keep their policy-gradient loss (rho = 0.2 in the paper):
      J = E[ (1/sum|o_i|) sum_{i,t} I[H_{i,t} >= tau_rho] min(rho_{i,t} A_{i,t}, clip(rho_{i,t}) A_{i,t}) ]
  with tau_rho the (1 - rho) quantile of H over the batch's completion tokens.
* ``clip_cov``: Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
  Clip-Cov: the centred covariance of each token,
      Cov_{i,t} = (A_{i,t} - mean_tok A) (log pi(y_{i,t}) - mean_tok log pi),
  and r * N tokens drawn at random among those with omega_low < Cov < omega_high (and not already clipped) have
  their gradient removed (verl defaults: r = 2e-4, omega = (1, 5)).
* ``kl_cov``: the same paper's KL-Cov: the top r * N tokens by Cov get a penalty beta |log pi - log pi_old| on top of
  the policy loss (verl: kl_cov_ratio 2e-4, ppo_kl_coef 0.1).
  (The paper and verl pair KL-Cov with the unclipped rho A; here it is added to the configured token surrogate,
  identical on the first minibatch of a rollout where rho = 1.)

Removing a token's gradient is done by zeroing its advantage, which for every token-level surrogate of
``surrogates.py`` zeroes that token's loss and gradient while the aggregation's denominators stay those of the full
mask (as the libraries do: the masked tokens still count in the token-mean).

Adaptive entropy coefficient (He et al. 2025, Skywork-OR1 §3, adaptive entropy control): after each step
    c_{k+1} = clip(c_k + delta sign(H_target - H_k), 0, c_max)
so the entropy bonus grows while the policy's entropy is below the target and shrinks above it.
"""
from __future__ import annotations

import numpy as np

from .losses import _check_shapes, _f64, aggregate

TOKEN_MASKS = ("none", "entropy_top", "clip_cov", "kl_cov")
"""Values of the knob ``token_mask``."""

__all__ = ["TOKEN_MASKS", "entropy_top_mask", "token_covariance", "clip_cov_mask", "kl_cov_select",
           "kl_cov_penalty", "adaptive_entropy_coef", "apply_token_mask"]


def entropy_top_mask(entropy, mask, frac: float) -> np.ndarray:
    """Wang et al. 2025: True on the ceil(frac * N) highest-entropy tokens of ``mask`` (N = mask.sum()); ties at
    the threshold all kept. ``entropy`` (B, L) is pi_old's next-token entropy at each position."""
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must lie in (0, 1], got {frac}")
    h = _f64(entropy)
    mask = _check_shapes(mask, h)
    n = int(mask.sum())
    if n == 0:
        return mask.copy()
    k = int(np.ceil(frac * n))
    thresh = np.sort(h[mask])[::-1][k - 1]
    return mask & (h >= thresh)


def token_covariance(logp, adv, mask) -> np.ndarray:
    """Cui et al. 2025 eq. (Clip-Cov / KL-Cov): Cov_t = (A_t - mean A)(logp_t - mean logp), means over the masked
    tokens; 0 outside the mask."""
    logp, adv = _f64(logp), _f64(adv)
    mask = _check_shapes(mask, logp, adv)
    n = mask.sum()
    if n == 0:
        return np.zeros_like(logp)
    ma, ml = adv[mask].mean(), logp[mask].mean()
    return np.where(mask, (adv - ma) * (logp - ml), 0.0)


def _n_select(ratio: float, n: int) -> int:
    return max(int(ratio * n), 1) if n else 0


def clip_cov_mask(cov, mask, *, ratio: float, lb: float, ub: float, rng: np.random.Generator,
                  clipped=None) -> np.ndarray:
    """Clip-Cov: the mask of tokens that KEEP their gradient; max(int(ratio * N), 1) tokens are drawn at random
    (without replacement) among the masked tokens with lb < Cov < ub that are not in ``clipped`` (tokens the PPO
    clip already holds) and removed."""
    cov = _f64(cov)
    mask = _check_shapes(mask, cov)
    eligible = mask & (cov > lb) & (cov < ub)
    if clipped is not None:
        eligible &= ~np.asarray(clipped, bool)
    idx = np.flatnonzero(eligible.ravel())
    keep = mask.copy()
    k = min(_n_select(ratio, int(mask.sum())), idx.size)
    if k:
        drop = rng.choice(idx, size=k, replace=False)
        keep.ravel()[drop] = False
    return keep


def kl_cov_select(cov, mask, *, ratio: float) -> np.ndarray:
    """KL-Cov: True on the max(int(ratio * N), 1) masked tokens of largest Cov (ties by position)."""
    cov = _f64(cov)
    mask = _check_shapes(mask, cov)
    k = _n_select(ratio, int(mask.sum()))
    out = np.zeros_like(mask)
    if k:
        flat = np.where(mask, cov, -np.inf).ravel()
        top = np.argsort(-flat, kind="stable")[:k]
        out.ravel()[top] = True
    return out & mask


def kl_cov_penalty(logp, old_logp, selected, mask, *, coef: float, aggregation: str, n_seqs=None, n_tokens=None,
                   max_tokens=None):
    r"""KL-Cov's term (to minimise) and its gradient in logp:
        L = coef * aggregate(I[selected] |logp - old_logp|, mask),  dL/dlogp_t = coef w_t sign(logp_t - old_t) I_t
    (sign(0) = 0, as the subgradient torch's abs uses). ``mask`` sets the aggregation's denominators."""
    logp, old = _f64(logp), _f64(old_logp)
    mask = _check_shapes(mask, logp, old)
    sel = np.asarray(selected, bool) & mask
    d = logp - old
    value, w = aggregate(np.where(sel, np.abs(d), 0.0), mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens,
                         max_tokens=max_tokens)
    return coef * value, coef * w * np.where(sel, np.sign(d), 0.0)


def adaptive_entropy_coef(coef: float, entropy: float, target: float, step: float, cap: float) -> float:
    """One update of the adaptive entropy coefficient: clip(coef + step * sign(target - entropy), 0, cap)."""
    return float(np.clip(coef + step * np.sign(target - entropy), 0.0, cap))


def apply_token_mask(kind: str, *, logp, old_logp, adv, mask, keep_entropy=None, rng=None, eps_low=0.2,
                     eps_high=0.2, cov_ratio=2e-4, clip_cov_lb=1.0, clip_cov_ub=5.0):
    """The trainer's hook: (advantages to give the surrogate, tokens selected for KL-Cov or None, fraction of masked
    tokens whose policy-gradient loss was removed). ``keep_entropy`` is the batch's entropy_top mask (rows of this
    minibatch)."""
    adv = _f64(adv)
    mask = np.asarray(mask, bool)
    n = max(int(mask.sum()), 1)
    if kind == "none":
        return adv, None, 0.0
    if kind == "entropy_top":
        keep = mask & keep_entropy
        return np.where(keep, adv, 0.0), None, float((mask & ~keep).sum() / n)
    cov = token_covariance(logp, adv, mask)
    if kind == "clip_cov":
        ratio = np.exp(np.where(mask, _f64(logp) - _f64(old_logp), 0.0))
        clipped = ((adv > 0) & (ratio > 1 + eps_high)) | ((adv < 0) & (ratio < 1 - eps_low))
        keep = clip_cov_mask(cov, mask, ratio=cov_ratio, lb=clip_cov_lb, ub=clip_cov_ub, rng=rng, clipped=clipped)
        return np.where(keep, adv, 0.0), None, float((mask & ~keep).sum() / n)
    if kind == "kl_cov":
        sel = kl_cov_select(cov, mask, ratio=cov_ratio)
        return adv, sel, float(sel.sum() / n)
    raise ValueError(f"token_mask must be one of {', '.join(TOKEN_MASKS)}; got {kind!r}")
