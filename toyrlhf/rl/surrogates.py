"""Policy surrogates with their exact gradients in logp (pure NumPy, float64): PPO's clipped surrogate on token
ratios and GSPO's on the length-normalised sequence ratio, as registered values of the knob ``ratio``.

Conventions as in ``losses.py``: padded ``(B, L)`` arrays and a bool completion mask; every loss is to be minimised
and comes with d loss / d logp, exactly 0 outside the mask.
"""
from __future__ import annotations

import numpy as np

from ..registry import Registry
from .losses import AGGREGATIONS, _check_shapes, _f64, _inv, _n_seqs, aggregate

__all__ = ["SURROGATES", "policy_loss", "clipped_token_surrogate", "gspo_sequence_surrogate"]



def _safe_ratio(log_ratio: np.ndarray, log_ratio_clip):
    """exp of the (clipped) log-ratio and its derivative with respect to the log-ratio."""
    if log_ratio_clip is None:
        ratio = np.exp(log_ratio)
        return ratio, ratio
    ratio = np.exp(np.clip(log_ratio, -log_ratio_clip, log_ratio_clip))
    return ratio, np.where(np.abs(log_ratio) < log_ratio_clip, ratio, 0.0)


def _clipped_surrogate(ratio, adv, eps_low, eps_high):
    """min(rho A, clip(rho, 1-eps_low, 1+eps_high) A), and where the unclipped branch is the active one."""
    unclipped = ratio * adv
    clipped = np.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    use_unclipped = unclipped <= clipped
    return np.minimum(unclipped, clipped), use_unclipped


def policy_loss(logp, old_logp, advantages, mask, *, eps_low: float = 0.2, eps_high: float = 0.2,
                ratio: str = "token", aggregation: str = "seq-mean-token-mean", n_seqs=None, n_tokens=None,
                max_tokens=None, log_ratio_clip: float | None = 20.0):
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
    n_tok = int(mask.sum())
    lr_used = log_ratio if log_ratio_clip is None else np.clip(log_ratio, -log_ratio_clip, log_ratio_clip)
    tok_ratio, _ = _safe_ratio(log_ratio, log_ratio_clip)
    approx_kl = float(np.sum(np.where(mask, (tok_ratio - 1.0) - lr_used, 0.0)) / n_tok) if n_tok else 0.0
    loss, grad, stats = surrogate(log_ratio, adv, mask, eps_low=eps_low, eps_high=eps_high, aggregation=aggregation,
                                  n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens,
                                  log_ratio_clip=log_ratio_clip)
    return loss, grad, {"clip_fraction": stats["clip_fraction"], "approx_kl": approx_kl, **stats}


SURROGATES = Registry("policy surrogate")
"""Policy surrogates by the knob ``ratio``: fn(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs,
n_tokens, max_tokens, log_ratio_clip) -> (loss, d loss / d logp, stats with clip_fraction, ratio_mean, ratio_max)."""


@SURROGATES.register("token", paper="Schulman et al. 2017 (PPO) eq. 7; Shao et al. 2024 (GRPO) eq. 3",
                     equation="-min(rho_t A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t),  rho_t = pi/pi_old")
def clipped_token_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation, n_seqs=None, n_tokens=None,
                            max_tokens=None, log_ratio_clip=20.0):
    """PPO's clipped surrogate on per-token ratios, aggregated over tokens (see ``policy_loss``)."""
    tok_ratio, dtok_ratio = _safe_ratio(log_ratio, log_ratio_clip)
    n_tok = int(mask.sum())
    a = np.where(mask, adv, 0.0)
    obj, use_unclipped = _clipped_surrogate(tok_ratio, a, eps_low, eps_high)
    loss, weights = aggregate(-obj, mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens)
    grad = weights * np.where(use_unclipped, -a * dtok_ratio, 0.0)
    clipped = mask & ~use_unclipped
    stats = {
        "clip_fraction": float(clipped.sum() / n_tok) if n_tok else 0.0,
        "ratio_mean": float(tok_ratio[mask].mean()) if n_tok else 1.0,
        "ratio_max": float(tok_ratio[mask].max()) if n_tok else 1.0,
    }
    return loss, grad, stats


@SURROGATES.register("sequence", paper="Zheng et al. 2025 (GSPO) eqs. 5-7",
                     equation="-(1/N) sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i),  "
                              "s_i = (pi(y_i)/pi_old(y_i))^(1/|y_i|)")
def gspo_sequence_surrogate(log_ratio, adv, mask, *, eps_low, eps_high, aggregation=None, n_seqs=None,
                            n_tokens=None, max_tokens=None, log_ratio_clip=20.0):
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
