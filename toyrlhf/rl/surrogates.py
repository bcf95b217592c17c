"""Policy surrogates with their exact gradients in logp (pure NumPy, float64): PPO's clipped surrogate on token
ratios and GSPO's on the length-normalised sequence ratio, as registered values of the knob ``ratio``.

Conventions as in ``losses.py``: padded ``(B, L)`` arrays and a bool completion mask; every loss is to be minimised
and comes with d loss / d logp, exactly 0 outside the mask.
"""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from ..registry import Registry
from .losses import AGGREGATIONS, _check_shapes, _clip, _f64, _inv, _n_seqs, aggregate

__all__ = ["SURROGATES", "SurrogateSettings", "policy_loss", "clipped_token_surrogate", "gspo_sequence_surrogate",
           "dual_clip_surrogate", "ratio_cap_surrogate", "cispo_surrogate", "sapo_surrogate", "gmpo_surrogate"]


@dataclass(frozen=True)
class SurrogateSettings:
    """The surrogates' own hyperparameters (``RLConfig`` fields of the same names)."""

    dual_clip_c: float = 3.0
    """Dual-clip PPO's lower bound c * A for A < 0 (Ye et al. 2019: c = 3)."""
    ratio_cap_delta: float = 4.0
    """INTELLECT-2's cap delta on the ratio for A < 0 (delta = 4)."""
    sapo_tau_pos: float = 1.0
    """SAPO's gate temperature for A > 0."""
    sapo_tau_neg: float = 1.05
    """SAPO's gate temperature for A <= 0 (faster decay for negative advantages)."""



def _safe_ratio(log_ratio: np.ndarray, log_ratio_clip):
    """exp of the (clipped) log-ratio and its derivative with respect to the log-ratio."""
    if log_ratio_clip is None:
        ratio = np.exp(log_ratio)
        return ratio, ratio
    ratio = np.exp(_clip(log_ratio, -log_ratio_clip, log_ratio_clip))
    return ratio, np.where(np.abs(log_ratio) < log_ratio_clip, ratio, 0.0)


def _clipped_surrogate(ratio, adv, eps_low, eps_high):
    """min(rho A, clip(rho, 1-eps_low, 1+eps_high) A), and where the unclipped branch is the active one."""
    unclipped = ratio * adv
    clipped = _clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    use_unclipped = unclipped <= clipped
    return np.minimum(unclipped, clipped), use_unclipped


def policy_loss(logp, old_logp, advantages, mask, *, eps_low: float = 0.2, eps_high: float = 0.2,
                ratio: str = "token", aggregation: str = "seq-mean-token-mean", n_seqs=None, n_tokens=None,
                max_tokens=None, log_ratio_clip: float | None = 20.0, hp: SurrogateSettings | None = None):
    r"""Clipped surrogate policy loss (to minimise) and its gradient with respect to logp.

    ratio="token" (PPO, Schulman et al. 2017 eq. 7; GRPO, Shao et al. 2024 eq. 3; clip-higher eps_low != eps_high,
    Yu et al. 2025 DAPO eq. 8):

        rho_{i,t} = exp(logp_{i,t} - old_logp_{i,t})
        l_{i,t}   = -min(rho_{i,t} A_{i,t}, clip(rho_{i,t}, 1 - eps_low, 1 + eps_high) A_{i,t})
        loss      = aggregate(l, mask, aggregation)            (see ``aggregate``)
        d loss / d logp_{i,t} = -w_{i,t} A_{i,t} rho_{i,t} [unclipped branch active]

    ratio="sequence" (GSPO, Zheng et al. 2025 eqs. 5-7):

        s_i  = exp((1/|o_i|) sum_t (logp_{i,t} - old_logp_{i,t}))    (length-normalised sequence ratio)
        A_i  = advantages[i, first masked t]                          (one advantage per sequence)
        loss = -(1/N) sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)
        d loss / d logp_{i,t} = -(1/N) A_i s_i / |o_i| [unclipped branch active]   for every masked t of row i

    In sequence mode the reduction over sequences is always the mean over N = ``n_seqs``: ``aggregation``,
    ``n_tokens`` and ``max_tokens`` are not used. (The GSPO paper's clip range is ~3e-4/4e-4, not 0.2.)

    ``ratio`` may be any entry of ``SURROGATES`` (dual_clip, ratio_cap, cispo, sapo, gmpo: see each function);
    ``hp`` holds their own hyperparameters.

    Numerical safety: the ratio is exponentiated from the log-ratio clipped to [-log_ratio_clip, log_ratio_clip]
    (None: no clipping); where that clip is active the ratio is constant and its gradient 0.

    Args:
        logp, old_logp: (B, L) log-probs of the sampled tokens under pi_theta and pi_old.
        advantages: (B, L) token advantages (already broadcast; see ``advantages.broadcast_to_tokens``).
        mask: (B, L) bool completion mask.
        n_seqs, n_tokens, max_tokens: the whole batch's counts, for exact gradient accumulation (``aggregate``).

    Returns:
        (loss float, dloss_dlogp (B, L) float64 zero outside the mask, stats) where stats holds
        ``clip_fraction`` (fraction of masked tokens -- of sequences in sequence mode -- whose clipped branch is
        strictly active, i.e. whose gradient the clip removed), ``approx_kl`` (mean over masked tokens of
        k3 = (rho - 1) - log rho, an estimate of KL(pi_old || pi_theta); the "approx_kl" of Huang et al. 2022,
        "The 37 Implementation Details of PPO"), ``ratio_mean`` and ``ratio_max`` (of the token ratios, or of the
        sequence ratios s_i in sequence mode).
    """
    logp, old_logp, adv = _f64(logp), _f64(old_logp), _f64(advantages)
    mask = _check_shapes(mask, logp, old_logp, adv)
    surrogate = SURROGATES.lookup(ratio).fn
    AGGREGATIONS.lookup(aggregation)
    log_ratio = np.where(mask, logp - old_logp, 0.0)
    n_tok = np.count_nonzero(mask)
    lr_used = log_ratio if log_ratio_clip is None else _clip(log_ratio, -log_ratio_clip, log_ratio_clip)
    tok_ratio = np.exp(lr_used)                                    # _safe_ratio's ratio (its gradient is not needed)
    approx_kl = float(np.where(mask, (tok_ratio - 1.0) - lr_used, 0.0).sum() / n_tok) if n_tok else 0.0
    loss, grad, stats = surrogate(log_ratio, adv, mask, eps_low=eps_low, eps_high=eps_high, aggregation=aggregation,
                                  n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens,
                                  log_ratio_clip=log_ratio_clip, hp=hp or SurrogateSettings())
    return loss, grad, {"clip_fraction": stats["clip_fraction"], "approx_kl": approx_kl, **stats}


SURROGATES = Registry("policy surrogate", defaults=dict(
    level="token",     # 'token': aggregated over tokens with `aggregation`; 'sequence': a mean over sequences
))
"""Policy surrogates by the knob ``ratio``: fn(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs,
n_tokens, max_tokens, log_ratio_clip, hp) -> (loss, d loss / d logp, stats with clip_fraction, ratio_mean,
ratio_max)."""


@SURROGATES.register("token", paper="Schulman et al. 2017 (PPO) eq. 7; Shao et al. 2024 (GRPO) eq. 3",
                     equation="-min(rho_t A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t),  rho_t = pi/pi_old")
def clipped_token_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs=None, n_tokens=None,
                            max_tokens=None, log_ratio_clip=20.0, hp=None):
    """PPO's clipped surrogate on per-token ratios, aggregated over tokens (see ``policy_loss``)."""
    tok_ratio, dtok_ratio = _safe_ratio(log_ratio, log_ratio_clip)
    a = np.where(mask, adv, 0.0)
    obj, use_unclipped = _clipped_surrogate(tok_ratio, a, eps_low, eps_high)
    loss, weights = aggregate(-obj, mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens)
    grad = weights * np.where(use_unclipped, -a * dtok_ratio, 0.0)
    return loss, grad, _token_stats(tok_ratio, mask, ~use_unclipped)


@SURROGATES.register("sequence", paper="Zheng et al. 2025 (GSPO) eqs. 5-7", level="sequence",
                     equation="-(1/N) sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i),  "
                              "s_i = (pi(y_i)/pi_old(y_i))^(1/|y_i|)")
def gspo_sequence_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation=None, n_seqs=None,
                            n_tokens=None, max_tokens=None, log_ratio_clip=20.0, hp=None):
    """GSPO's clipped surrogate on the length-normalised sequence ratio, a mean over sequences (see
    ``policy_loss``; ``aggregation``, ``n_tokens`` and ``max_tokens`` are not used)."""
    lengths = mask.sum(axis=1).astype(np.float64)
    valid = lengths > 0
    seq_log_ratio = log_ratio.sum(axis=1) / np.maximum(lengths, 1.0)
    s, ds = _safe_ratio(seq_log_ratio, log_ratio_clip)
    first = np.argmax(mask, axis=1)
    a_seq = np.where(valid, adv[np.arange(adv.shape[0]), first], 0.0)
    obj, use_unclipped = _clipped_surrogate(s, a_seq, eps_low, eps_high)
    inv_n = _inv(_n_seqs(mask, n_seqs))
    loss = float(-np.sum(np.where(valid, obj, 0.0)) * inv_n)
    row_grad = np.where(valid & use_unclipped, -a_seq * ds * inv_n / np.maximum(lengths, 1.0), 0.0)
    grad = np.where(mask, row_grad[:, None], 0.0)
    n_valid = int(valid.sum())
    stats = {
        "clip_fraction": float((valid & ~use_unclipped).sum() / n_valid) if n_valid else 0.0,
        "ratio_mean": float(s[valid].mean()) if n_valid else 1.0,
        "ratio_max": float(s[valid].max()) if n_valid else 1.0,
    }
    return loss, grad, stats


def _token_stats(ratio, mask, removed) -> dict:
    """clip_fraction (masked tokens whose gradient the surrogate removed), ratio_mean and ratio_max over the mask."""
    n_tok = np.count_nonzero(mask)
    if not n_tok:
        return {"clip_fraction": 0.0, "ratio_mean": 1.0, "ratio_max": 1.0}
    masked = ratio[mask]
    return {"clip_fraction": float(np.count_nonzero(mask & removed) / n_tok),
            "ratio_mean": float(masked.sum() / n_tok),                # = masked.mean(), without its Python layers
            "ratio_max": float(masked.max())}


def _lower_bounded(log_ratio, adv, mask, eps_low, eps_high, aggregation, n_seqs, n_tokens, max_tokens,
                   log_ratio_clip, c):
    """PPO's clipped objective with the extra bound max(., c A) for A < 0 (dual clip; the ratio cap)."""
    ratio, dratio = _safe_ratio(log_ratio, log_ratio_clip)
    a = np.where(mask, adv, 0.0)
    obj, use_unclipped = _clipped_surrogate(ratio, a, eps_low, eps_high)
    floor = (a < 0) & (c * a > obj)                     # A < 0 and rho > c: the objective is the constant c A
    obj = np.where(floor, c * a, obj)
    loss, weights = aggregate(-obj, mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens)
    grad = weights * np.where(use_unclipped & ~floor, -a * dratio, 0.0)
    return loss, grad, _token_stats(ratio, mask, ~use_unclipped | floor)


@SURROGATES.register("dual_clip", paper="Ye et al. 2019 (Mastering Complex Control in MOBA Games), dual-clip PPO eq. 5",
                     equation="A < 0: -max(min(rho A, clip(rho, 1-eps_low, 1+eps_high) A), c A);  A >= 0: PPO")
def dual_clip_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs=None, n_tokens=None,
                        max_tokens=None, log_ratio_clip=20.0, hp=None):
    r"""Dual-clip PPO (Ye et al. 2019, "Mastering Complex Control in MOBA Games with Deep Reinforcement Learning",
    eq. 5): for a negative advantage PPO's min(rho A, clip(rho) A) = rho A is unbounded below as rho grows (a
    token the policy has made much more likely than pi_old did); dual clip bounds it by c A (c > 1):

        l_t = -max(min(rho_t A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t), c A_t)     (A_t < 0)
        l_t = -min(rho_t A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t)                  (A_t >= 0)

    d l_t / d logp_t = -w_t A_t rho_t on the unclipped branch with rho_t < c, else 0. ``hp.dual_clip_c`` is c.
    """
    c = (hp or SurrogateSettings()).dual_clip_c
    return _lower_bounded(log_ratio, adv, mask, eps_low, eps_high, aggregation, n_seqs, n_tokens, max_tokens,
                          log_ratio_clip, c)


@SURROGATES.register("ratio_cap", paper="Prime Intellect 2025 (INTELLECT-2), two-sided clipping with delta",
                     equation="-min(min(rho, delta) A, clip(rho, 1-eps_low, 1+eps_high) A),  delta > 1 + eps_high")
def ratio_cap_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs=None, n_tokens=None,
                        max_tokens=None, log_ratio_clip=20.0, hp=None):
    r"""INTELLECT-2's two-sided ratio clipping (Prime Intellect 2025, "INTELLECT-2: A Reasoning Model Trained
    Through Globally Decentralized Reinforcement Learning", §3): the ratio of the unclipped branch is capped at
    delta,

        l_t = -min(min(rho_t, delta) A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t),     delta > 1 + eps_high

    For A >= 0 this is PPO (the clipped branch is already the smaller one once rho > 1 + eps_high < delta); for
    A < 0 and rho > delta the objective is delta A, constant. It is therefore dual-clip PPO with c = delta
    (``dual_clip_surrogate``; the test checks the identity). ``hp.ratio_cap_delta`` is delta (INTELLECT-2: 4).
    """
    d = (hp or SurrogateSettings()).ratio_cap_delta
    return _lower_bounded(log_ratio, adv, mask, eps_low, eps_high, aggregation, n_seqs, n_tokens, max_tokens,
                          log_ratio_clip, d)


@SURROGATES.register("cispo", paper="MiniMax 2025 (MiniMax-M1) §3.1, CISPO eq. 4",
                     equation="-sg(clip(rho, 1-eps_low, 1+eps_high)) A log pi  (every token keeps a gradient)")
def cispo_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs=None, n_tokens=None,
                    max_tokens=None, log_ratio_clip=20.0, hp=None):
    r"""CISPO (MiniMax 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention", §3.1):
    clip the importance-sampling *weight* and detach it, instead of clipping the update:

        J = (1 / sum_i |o_i|) sum_i sum_t sg(r^_{i,t}) A_{i,t} log pi_theta(o_{i,t}),
        r^_{i,t} = clip(rho_{i,t}, 1 - eps_low, 1 + eps_high)

    (the paper's aggregation is token-mean; any ``aggregation`` works here). No token's gradient is dropped:
    d l_t / d logp_t = -w_t r^_t A_t. The reported loss value is aggregate(-sg(r^) A (logp - old_logp)), 0 at
    rho = 1, whose gradient is that one. ``clip_fraction`` counts tokens whose weight the clip changed.
    """
    ratio, _ = _safe_ratio(log_ratio, log_ratio_clip)
    a = np.where(mask, adv, 0.0)
    w_is = np.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss, weights = aggregate(-w_is * a * log_ratio, mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens,
                              max_tokens=max_tokens)
    grad = weights * np.where(mask, -w_is * a, 0.0)
    return loss, grad, _token_stats(ratio, mask, w_is != ratio)


@SURROGATES.register("sapo", paper="Gao et al. 2025 (SAPO, Soft Adaptive Policy Optimization), Qwen",
                     equation="-(4/tau) sigmoid(tau (rho - 1)) A,  tau = tau_pos (A > 0) or tau_neg")
def sapo_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs=None, n_tokens=None,
                   max_tokens=None, log_ratio_clip=20.0, hp=None):
    r"""SAPO (Gao et al. 2025, "Soft Adaptive Policy Optimization"): a smooth, temperature-controlled gate in place
    of the hard clip,

        f(rho) = (4 / tau) sigmoid(tau (rho - 1)),      l_t = -f(rho_t) A_t,
        d l_t / d logp_t = -w_t A_t 4 s (1 - s) rho_t,   s = sigmoid(tau (rho_t - 1))

    so the gradient weight is exactly 1 at rho = 1 (on-policy SAPO = the unclipped policy gradient) and decays
    smoothly as rho leaves 1; tau = ``hp.sapo_tau_pos`` for A > 0 and ``hp.sapo_tau_neg`` (larger: faster decay)
    otherwise. eps_low / eps_high are not used. ``clip_fraction``: tokens whose gate weight is below 1/2.
    """
    hp = hp or SurrogateSettings()
    ratio, dratio = _safe_ratio(log_ratio, log_ratio_clip)
    a = np.where(mask, adv, 0.0)
    tau = np.where(a > 0, hp.sapo_tau_pos, hp.sapo_tau_neg)
    s = 1.0 / (1.0 + np.exp(-tau * (ratio - 1.0)))
    loss, weights = aggregate(-(4.0 / tau) * s * a, mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens,
                              max_tokens=max_tokens)
    gate = 4.0 * s * (1.0 - s)
    grad = weights * np.where(mask, -a * gate * dratio, 0.0)
    return loss, grad, _token_stats(ratio, mask, gate < 0.5)


@SURROGATES.register("gmpo", paper="Zhao et al. 2025 (GMPO, Geometric-Mean Policy Optimization) eq. 4",
                     level="sequence",
                     equation="-(1/N) sum_i A_i exp((1/|o_i|) sum_t sgn-clip(log rho_t, -eps_low, eps_high))")
def gmpo_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation=None, n_seqs=None, n_tokens=None,
                   max_tokens=None, log_ratio_clip=20.0, hp=None):
    r"""GMPO (Zhao et al. 2025, "Geometric-Mean Policy Optimization"): the geometric mean of the clipped token
    ratios instead of their arithmetic mean, with PPO's pessimistic clip applied per token in log space:

        l~_{i,t} = min(log rho_{i,t}, clip(log rho_{i,t}, -eps_low, eps_high))   if A_i > 0
                   max(log rho_{i,t}, clip(log rho_{i,t}, -eps_low, eps_high))   if A_i < 0
        J = (1/N) sum_i A_i exp((1/|o_i|) sum_t l~_{i,t})

        d(-J) / d logp_{i,t} = -(1/N) A_i g_i / |o_i| [token t unclipped],     g_i = exp(mean_t l~_{i,t})

    A mean over sequences (``aggregation`` is not used; the paper: eps = 0.4 on both sides, i.e. ratios in
    (e^-0.4, e^0.4)). ``clip_fraction`` counts the tokens whose clip is active.
    """
    lengths = mask.sum(axis=1).astype(np.float64)
    valid = lengths > 0
    first = np.argmax(mask, axis=1)
    a_seq = np.where(valid, adv[np.arange(adv.shape[0]), first], 0.0)
    lr = np.where(mask, log_ratio, 0.0)
    if log_ratio_clip is not None:
        lr = np.clip(lr, -log_ratio_clip, log_ratio_clip)
    clipped = np.clip(lr, -eps_low, eps_high)
    pos = (a_seq > 0)[:, None]
    tok = np.where(pos, np.minimum(lr, clipped), np.maximum(lr, clipped))
    active = np.where(pos, lr <= clipped, lr >= clipped) & mask            # the unclipped log-ratio is used
    if log_ratio_clip is not None:
        active &= np.abs(np.where(mask, log_ratio, 0.0)) < log_ratio_clip
    g = np.exp(np.where(mask, tok, 0.0).sum(axis=1) / np.maximum(lengths, 1.0))
    inv_n = _inv(_n_seqs(mask, n_seqs))
    loss = float(-np.sum(np.where(valid, a_seq * g, 0.0)) * inv_n)
    row = np.where(valid, -a_seq * g * inv_n / np.maximum(lengths, 1.0), 0.0)
    grad = np.where(active, row[:, None], 0.0)
    n_tok = int(mask.sum())
    stats = {
        "clip_fraction": float((mask & ~active).sum() / n_tok) if n_tok else 0.0,
        "ratio_mean": float(g[valid].mean()) if valid.any() else 1.0,
        "ratio_max": float(g[valid].max()) if valid.any() else 1.0,
    }
    return loss, grad, stats
