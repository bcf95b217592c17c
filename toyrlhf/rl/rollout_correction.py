"""Rollout-training mismatch corrections: the per-token weight c_t on the policy-gradient term when the sampler's
mu differs from the trainer's pi (the knob ``rollout_correction``), one registered function per correction (pure
NumPy; the trainer and the exact engine's ``exact.mismatch`` both apply ``rollout_correction_weights``)."""
from __future__ import annotations

import numpy as np

from ..registry import Registry

__all__ = ["ROLLOUT_CORRECTIONS", "rollout_correction_weights"]

ROLLOUT_CORRECTIONS = Registry("rollout correction", defaults=dict(
    level="token",     # 'sequence': the weight is one number per sequence (any surrogate); 'token': it varies
                       # along the sequence (needs a token-level surrogate)
))
"""Corrections of the rollout-training mismatch by the knob ``rollout_correction``: fn(w, W, geo, C, lo, hi) ->
the weight c_t (broadcastable to (N, L)), from the token ratios w_t = pi(y_t)/mu(y_t) (N, L), the sequence ratio
W = prod_t w_t (N, 1) and its geometric mean W^(1/|y|) (N, 1). ``rollout_correction_weights`` applies one."""


@ROLLOUT_CORRECTIONS.register("none", paper="(no correction: the sampler's draws are treated as pi's)",
                              equation="c_t = 1", level="sequence")
def _corr_none(w, W, geo, C, lo, hi):
    return np.ones_like(W)


@ROLLOUT_CORRECTIONS.register("seq_is", paper="sequence importance sampling (Precup et al. 2000)",
                              equation="c_t = W = prod_t pi/mu  (unbiased, unbounded)", level="sequence")
def _corr_seq_is(w, W, geo, C, lo, hi):
    return W


@ROLLOUT_CORRECTIONS.register("token_tis", paper="Yao et al. 2025, 'Your Efficient RL Framework Secretly Brings "
                              "You Off-Policy RL Training' (TIS); verl rollout_is=token, OpenRLHF tis",
                              equation="c_t = min(w_t, C)")
def _corr_token_tis(w, W, geo, C, lo, hi):
    return np.minimum(w, C)


@ROLLOUT_CORRECTIONS.register("seq_tis", paper="truncated sequence IS; verl rollout_is=sequence",
                              equation="c_t = min(W, C)", level="sequence")
def _corr_seq_tis(w, W, geo, C, lo, hi):
    return np.minimum(W, C)


@ROLLOUT_CORRECTIONS.register("token_mask", paper="Ling Team 2025 (Ring-1T) IcePop; OpenRLHF icepop, verl "
                              "rollout_rs=token", equation="c_t = w_t 1[lo <= w_t <= hi]")
def _corr_token_mask(w, W, geo, C, lo, hi):
    return np.where((w >= lo) & (w <= hi), w, 0.0)


@ROLLOUT_CORRECTIONS.register("seq_mask", paper="Liu et al. 2025, 'When Speed Kills Stability' (MIS); verl "
                              "rollout_rs=sequence", equation="c_t = W 1[lo <= W <= hi]", level="sequence")
def _corr_seq_mask(w, W, geo, C, lo, hi):
    return np.where((W >= lo) & (W <= hi), W, 0.0)


@ROLLOUT_CORRECTIONS.register("geo_mask", paper="geometric-mean sequence mask; verl rollout_rs=geometric, "
                              "OpenRLHF seq-mask-tis", equation="c_t = min(w_t, C) 1[lo <= W^(1/|y|) <= hi]")
def _corr_geo_mask(w, W, geo, C, lo, hi):
    return np.where((geo >= lo) & (geo <= hi), np.minimum(w, C), 0.0)


def rollout_correction_weights(kind: str, log_w, mask, *, C: float = 2.0, lo: float = 0.5,
                               hi: float = 2.0) -> np.ndarray:
    r"""(N, L) the per-token weight c_t of rollout correction `kind` (``ROLLOUT_CORRECTIONS``), 0 outside `mask`.

    The sampler draws y ~ mu (a rollout engine with other numerics or sampling settings), the trainer
    differentiates pi. With the token log-ratios log w_t = log pi(y_t) - log mu(y_t) (0 outside the mask), the
    corrected single-sample policy gradient is  sum_t c_t(y) A(y) grad log pi(y_t):  c_t = 1 ignores the mismatch,
    c_t = W = prod_t w_t is sequence importance sampling (unbiased, E_mu[W f] = E_pi[f]), and the truncated (TIS:
    min(., C)) and masked (IcePop / MIS: keep only lo <= . <= hi) weights trade that bias for variance (Yao et al.
    2025; Ling Team 2025; Liu et al. 2025). The trainer multiplies the advantage by c_t (detached: c >= 0 and every
    registered surrogate is positively homogeneous in A, so this weights the policy-gradient term only); the exact
    engine (``exact.mismatch``) takes the same weights' expectation.
    """
    entry = ROLLOUT_CORRECTIONS.lookup(kind)
    mask = np.asarray(mask, dtype=bool)
    log_w = np.where(mask, np.asarray(log_w, dtype=np.float64), 0.0)
    log_W = log_w.sum(axis=1, keepdims=True)
    n = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    with np.errstate(over="ignore"):          # seq_is: W may overflow to inf for a far-off sampler; the rest clip
        c = entry.fn(np.exp(log_w), np.exp(log_W), np.exp(log_W / n), C, lo, hi)
    return np.where(mask, np.broadcast_to(c, log_w.shape), 0.0)
