"""RL losses with their exact gradients, written as the papers write them (pure NumPy, float64, no model code).

Conventions
-----------
* Inputs are padded ``(B, L)`` arrays plus a bool completion ``mask`` (``toyrlhf/tokens.py``). ``logp`` is
  log pi_theta of the sampled token at each position, ``old_logp`` the same under the behaviour policy pi_old,
  ``ref_logp`` under the frozen reference pi_ref.
* Every loss is to be **minimised** (loss = -objective) and returns its value together with the gradient with
  respect to its log-prob (or value) input: a float64 ``(B, L)`` array that is exactly 0 outside the mask. The model
  chains it through ``dlogp/dlogits`` (``model.TinyLM.logp_backward``).
* Aggregation over tokens and sequences is explicit (``aggregate``). The global counts ``n_seqs`` / ``n_tokens`` /
  ``max_tokens`` let a trainer split a rollout into minibatches and **sum** their losses and gradients (gradient
  accumulation) to get exactly the full-batch loss and gradient.
"""
from __future__ import annotations

import math

import numpy as np

from ..registry import Registry
from .rollout_correction import ROLLOUT_CORRECTIONS, rollout_correction_weights  # re-exported: the trainer's names

__all__ = [
    "AGGREGATIONS",
    "KL_PLACEMENTS",
    "aggregate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "KL_ESTIMATORS",
    "kl_loss",
    "kl_penalty_rewards",
    "value_loss",
    "explained_variance",
    "AdaptiveKLController",
    "FixedKLController",
    "soft_overlong_penalty",
    "ROLLOUT_CORRECTIONS",
    "rollout_correction_weights",
]

KL_PLACEMENTS = ("reward", "loss", "none")
"""Where the KL to the reference goes (the knob ``kl``): 'reward' (a per-token penalty folded into the reward,
``kl_penalty_rewards``; Ziegler et al. 2019, InstructGPT), 'loss' (a term beta * KL in the loss, ``kl_loss``;
DeepSeekMath eq. 3), or 'none'."""


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _clip(x, lo, hi):
    """np.clip(x, lo, hi) for float bounds, as its two ufuncs: the same numbers without np.clip's Python wrapper,
    which cost more than the arithmetic on a minibatch's (32, 8) arrays (measured: 11 against 6 us)."""
    return np.minimum(np.maximum(x, lo), hi)


def _check_shapes(mask, *arrays) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (B, L), got shape {mask.shape}")
    for a in arrays:
        if a.shape != mask.shape:
            raise ValueError(f"array of shape {a.shape} does not match mask {mask.shape}")
    return mask


def _n_seqs(mask: np.ndarray, n_seqs) -> float:
    """Default sequence count: rows of this array with at least one completion token."""
    n = int(mask.any(axis=1).sum()) if n_seqs is None else n_seqs
    if n_seqs is not None and n_seqs <= 0:
        raise ValueError(f"n_seqs must be positive, got {n_seqs}")
    return float(n)


# ----------------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------------

AGGREGATIONS = Registry("aggregation", defaults=dict(
    sequence_scale=None,   # h(lengths, max_tokens) (N,): the per-sequence token weight times N, for the exact engine;
                           # None where the weight is no function of one sequence (token-mean)
))
"""Token aggregation modes by the knob ``aggregation``: fn(mask, lengths, *, n_seqs, n_tokens, max_tokens) -> the
weight (B,) each token of a row gets (see ``aggregate``)."""


def _inv(n: float) -> float:
    return 1.0 / n if n > 0 else 0.0


@AGGREGATIONS.register("seq-mean-token-mean", paper="Shao et al. 2024 (DeepSeekMath) eq. 3",
                       equation="(1/N) sum_i (1/|o_i|) sum_t l_{i,t}",
                       sequence_scale=lambda lengths, max_tokens: 1.0 / lengths)
def _seq_mean_token_mean(mask, lengths, *, n_seqs=None, n_tokens=None, max_tokens=None):
    return np.where(lengths > 0, _inv(_n_seqs(mask, n_seqs)) / np.maximum(lengths, 1.0), 0.0)


@AGGREGATIONS.register("token-mean", paper="Yu et al. 2025 (DAPO) eq. 8, §3.3",
                       equation="(1 / sum_i |o_i|) sum_i sum_t l_{i,t}")
def _token_mean(mask, lengths, *, n_seqs=None, n_tokens=None, max_tokens=None):
    n = float(np.count_nonzero(mask)) if n_tokens is None else float(n_tokens)
    if n_tokens is not None and n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    return np.full(mask.shape[0], _inv(n))


@AGGREGATIONS.register("seq-mean-token-sum-norm", paper="Liu et al. 2025 (Dr. GRPO) §3",
                       equation="(1 / (N * max_tokens)) sum_i sum_t l_{i,t}",
                       sequence_scale=lambda lengths, max_tokens: np.full(len(lengths), 1.0 / float(max_tokens)))
def _seq_mean_token_sum_norm(mask, lengths, *, n_seqs=None, n_tokens=None, max_tokens=None):
    inv_n = _inv(_n_seqs(mask, n_seqs))
    if max_tokens is None or max_tokens <= 0:
        raise ValueError("aggregation 'seq-mean-token-sum-norm' needs a positive max_tokens "
                         "(the constant generation budget, e.g. max_new_tokens)")
    return np.full(mask.shape[0], inv_n / float(max_tokens))


@AGGREGATIONS.register("seq-mean-token-sum", paper="Liu et al. 2025 eq. 2 (PPO as written); REINFORCE",
                       equation="(1/N) sum_i sum_t l_{i,t}",
                       sequence_scale=lambda lengths, max_tokens: np.ones(len(lengths)))
def _seq_mean_token_sum(mask, lengths, *, n_seqs=None, n_tokens=None, max_tokens=None):
    return np.full(mask.shape[0], _inv(_n_seqs(mask, n_seqs)))


def aggregate(per_token, mask, mode: str, *, n_seqs=None, n_tokens=None, max_tokens=None):
    r"""Reduce a per-token quantity l_{i,t} to a scalar, returning the scalar and its weights d scalar / d l_{i,t}.

    With |o_i| the number of masked tokens of row i:

    "seq-mean-token-mean"      (1/N) sum_i (1/|o_i|) sum_t l_{i,t}
        GRPO, Shao et al. 2024 (DeepSeekMath) eq. 3; also their PPO eq. 1. Liu et al. 2025 (Dr. GRPO §3) show the
        1/|o_i| biases towards long wrong answers.
    "token-mean"               (1 / sum_i |o_i|) sum_i sum_t l_{i,t}
        DAPO token-level policy-gradient loss, Yu et al. 2025 eq. 8 (§3.3).
    "seq-mean-token-sum-norm"  (1 / (N * max_tokens)) sum_i sum_t l_{i,t}
        Dr. GRPO, Liu et al. 2025 §3: sum over tokens divided by a *constant* generation budget MAX_TOKENS.
    "seq-mean-token-sum"       (1/N) sum_i sum_t l_{i,t}
        Unnormalised sum over tokens per sequence (PPO as in Liu et al. 2025 eq. 2; REINFORCE).

    Args:
        per_token: (B, L) values; entries outside ``mask`` are ignored (even if NaN).
        mask: (B, L) bool.
        mode: one of ``AGGREGATIONS``.
        n_seqs: N, the number of sequences of the *whole* batch (default: rows of this array with >= 1 masked
            token).
        n_tokens: sum_i |o_i| of the *whole* batch, for "token-mean" (default: this array's mask count).
        max_tokens: the constant budget of "seq-mean-token-sum-norm" (required for that mode; pass the rollout's
            max_new_tokens, not a per-minibatch quantity).

    With the global counts, summing ``aggregate`` over any split of the rows into minibatches reproduces the
    full-batch scalar and weights exactly. With the default (local) counts "token-mean" does not: averaging
    per-minibatch token means re-weights tokens by their minibatch's total length.

    Returns:
        (scalar float, weights (B, L) float64, 0 outside the mask). An all-False mask with default counts gives
        (0.0, zeros).
    """
    x = _f64(per_token)
    mask = _check_shapes(mask, x)
    row_weights = AGGREGATIONS.lookup(mode).fn
    lengths = mask.sum(axis=1, dtype=np.float64)
    row_w = row_weights(mask, lengths, n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens)
    weights = np.where(mask, row_w[:, None], 0.0)
    value = float((np.where(mask, x, 0.0) * weights).sum())
    return value, weights


# ----------------------------------------------------------------------------------------------------------------
# KL estimators (per token)
# ----------------------------------------------------------------------------------------------------------------

KL_ESTIMATORS = Registry("KL estimator", defaults=dict(
    gradient_of=None,   # straight-through estimators: the estimator whose gradient they return (else their own)
))
"""KL estimators by the knob ``kl_estimator``: fn(logp, ref_logp) -> (k, dk/dlogp), elementwise."""


@KL_ESTIMATORS.register("k1", paper="Schulman 2020, Approximating KL Divergence", equation="k1 = log(pi/pi_ref)")
def kl_k1(logp, ref_logp):
    r"""k1 estimator of KL(pi_theta || pi_ref) per token, and its derivative in logp.

    Schulman 2020, "Approximating KL Divergence", k1 = -log r with r = pi_ref / pi_theta:

        k1 = log pi_theta - log pi_ref,        d k1 / d logp = 1

    Unbiased for KL(pi||pi_ref) under samples from pi_theta, negative for about half the samples, high variance.
    As a *loss* its expected gradient is 0 (E_pi[grad log pi] = 0); use it in the reward (``kl_penalty_rewards``).
    Elementwise, no mask: the caller masks (``kl_loss`` does).

    Returns:
        (kl, dkl_dlogp), float64 arrays of the input shape.
    """
    logp, ref_logp = _f64(logp), _f64(ref_logp)
    return logp - ref_logp, np.ones(np.broadcast(logp, ref_logp).shape)


@KL_ESTIMATORS.register("k2", paper="Schulman 2020, Approximating KL Divergence",
                        equation="k2 = (1/2) log(pi/pi_ref)^2")
def kl_k2(logp, ref_logp):
    r"""k2 estimator of KL(pi_theta || pi_ref) per token, and its derivative in logp.

    Schulman 2020, "Approximating KL Divergence", k2 = (1/2) (log r)^2 with r = pi_ref / pi_theta:

        k2 = 0.5 * (log pi_theta - log pi_ref)^2,        d k2 / d logp = log pi_theta - log pi_ref

    Biased (an f-divergence agreeing with KL to second order), always >= 0, low variance. As a loss its expected
    gradient is exactly the reverse-KL gradient per token.

    Returns:
        (kl, dkl_dlogp), float64 arrays of the input shape.
    """
    d = _f64(logp) - _f64(ref_logp)
    return 0.5 * d * d, d


@KL_ESTIMATORS.register("k3", paper="Schulman 2020; Shao et al. 2024 (DeepSeekMath) eq. 4",
                        equation="k3 = pi_ref/pi - log(pi_ref/pi) - 1")
def kl_k3(logp, ref_logp):
    r"""k3 estimator of KL(pi_theta || pi_ref) per token, and its derivative in logp.

    Schulman 2020, "Approximating KL Divergence", k3 = (r - 1) - log r with r = pi_ref / pi_theta; this is the KL
    term of GRPO, Shao et al. 2024 (DeepSeekMath) eq. 4:

        k3 = exp(log pi_ref - log pi_theta) - (log pi_ref - log pi_theta) - 1
        d k3 / d logp = 1 - exp(log pi_ref - log pi_theta)

    Unbiased and >= 0 (log x <= x - 1). As a loss its expected gradient is that of the *forward* KL(pi_ref||pi)
    (DeepSeekMath eq. 21's coefficient beta (pi_ref/pi_theta - 1)), not of the reverse KL it estimates.

    Returns:
        (kl, dkl_dlogp), float64 arrays of the input shape.
    """
    x = _f64(ref_logp) - _f64(logp)
    ex = np.exp(x)
    return ex - x - 1.0, 1.0 - ex


@KL_ESTIMATORS.register("k3+", paper="verl kl_penalty 'k3+' (low_var_kl_plus): Schulman 2020 k3 with a "
                        "straight-through k2 gradient", equation="value k3,  gradient d k2/d logp = log(pi/pi_ref)",
                        gradient_of="k2")
def kl_k3_plus(logp, ref_logp):
    r"""Straight-through KL: the *value* of k3 (unbiased, >= 0; Schulman 2020) with the *gradient* of k2.

        value = k3 = pi_ref/pi - log(pi_ref/pi) - 1,      d/d logp = d k2 / d logp = log pi - log pi_ref

    In autograd this is k3.detach() + k2 - k2.detach(). As a loss its expected per-token gradient is k2's,
    E[log(pi/pi_ref) grad log pi], the reverse-KL gradient at each position (Tang & Munos 2025; no future terms),
    where plain k3 as a loss follows the forward KL(pi_ref||pi).

    Returns:
        (kl, dkl_dlogp), float64 arrays of the input shape.
    """
    value, _ = kl_k3(logp, ref_logp)
    return value, _f64(logp) - _f64(ref_logp)


def _estimator(name):
    return KL_ESTIMATORS.lookup(name).fn


# ----------------------------------------------------------------------------------------------------------------
# KL as a loss term, KL as a reward
# ----------------------------------------------------------------------------------------------------------------

def kl_loss(logp, ref_logp, mask, *, estimator: str = "k3", aggregation: str = "seq-mean-token-mean",
            n_seqs=None, n_tokens=None, max_tokens=None, old_logp=None):
    r"""KL regulariser added to the loss (GRPO style), and its gradient with respect to logp.

    Shao et al. 2024 (DeepSeekMath) eq. 3 puts "- beta D_KL[pi_theta || pi_ref]" inside the objective's token
    average, with D_KL the k3 estimator of eq. 4 (Schulman 2020). As a loss to minimise:

        loss = aggregate(k(logp, ref_logp), mask, aggregation),     d loss / d logp_{i,t} = w_{i,t} k'(logp_{i,t})

    with k one of ``KL_ESTIMATORS`` (k1, k2, k3). The trainer multiplies both by beta. No importance ratio is
    applied (as written in GRPO); off-policy epochs therefore use the current samples' KL only.

    With ``old_logp`` (the sampling policy's log-probs) each token's KL is importance-weighted by the (not
    detached) ratio rho_t = pi_theta / pi_old, the unbiased KL estimate of DeepSeek-AI 2025 (DeepSeek-V3.2, §3.1
    "unbiased KL estimate"; TRL ``use_bias_correction_kl``), E_{pi_old}[rho k] = E_{pi_theta}[k]:

        loss = aggregate(rho * k, mask),      d loss / d logp_{i,t} = w_{i,t} rho_{i,t} (k + k')

    For k3, k3 + k3' = log(pi/pi_ref): on-policy (rho = 1) its expected gradient is the per-token reverse-KL
    gradient, like k2 or k3+.

    Returns:
        (loss float, dloss_dlogp (B, L) float64, zero outside the mask).
    """
    logp, ref_logp = _f64(logp), _f64(ref_logp)
    mask = _check_shapes(mask, logp, ref_logp)
    k, dk = _estimator(estimator)(np.where(mask, logp, 0.0), np.where(mask, ref_logp, 0.0))
    if old_logp is not None:
        old_logp = _f64(old_logp)
        _check_shapes(mask, old_logp)
        rho = np.exp(np.where(mask, logp - old_logp, 0.0))
        k, dk = rho * k, rho * (k + dk)
    loss, weights = aggregate(k, mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens)
    return loss, weights * np.where(mask, dk, 0.0)


def kl_penalty_rewards(logp, ref_logp, mask, beta: float, estimator: str = "k1") -> np.ndarray:
    r"""Per-token KL penalty folded into the reward (detached: no gradient flows through it).

    Ziegler et al. 2019 R(x, y) = r(x, y) - beta log(pi(y|x) / rho(y|x)), applied per token as in InstructGPT
    (Ouyang et al. 2022) and written out by Shao et al. 2024 (DeepSeekMath) eq. 2:

        r_t = r_phi(q, o_{<=t}) - beta * log(pi_theta(o_t | .) / pi_ref(o_t | .))

    This returns the penalty part -beta * k(logp_t, ref_logp_t) (k1 by default; k2/k3 selectable) on masked
    positions and 0 elsewhere; add the RM score on the last token. With gamma = 1 the return sums to the
    sequence-level penalty -beta * sum_t log(pi/pi_ref).

    Returns:
        (B, L) float64.
    """
    logp, ref_logp = _f64(logp), _f64(ref_logp)
    mask = _check_shapes(mask, logp, ref_logp)
    k, _ = _estimator(estimator)(np.where(mask, logp, 0.0), np.where(mask, ref_logp, 0.0))
    return np.where(mask, -beta * k, 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Critic
# ----------------------------------------------------------------------------------------------------------------

def value_loss(values, old_values, returns, mask, *, clip: float | None = 0.2, aggregation: str = "token-mean",
               n_seqs=None, n_tokens=None, max_tokens=None):
    r"""Critic loss (to minimise) and its gradient with respect to ``values``.

    Unclipped (clip=None), the squared error of PPO eq. 9's L^VF (Schulman et al. 2017) with a factor 1/2:

        l_t = 0.5 (V_t - R_t)^2,                                       d l_t / d V_t = V_t - R_t

    Clipped (clip=c):

        V^clip_t = V^old_t + clip(V_t - V^old_t, -c, c)
        l_t = 0.5 max((V_t - R_t)^2, (V^clip_t - R_t)^2)

    Value clipping is *not* in the PPO paper: it is an implementation detail of OpenAI baselines (ppo2), kept by
    verl/TRL/OpenRLHF (Huang et al. 2022, "The 37 Implementation Details of PPO", which also reports that
    Engstrom et al. 2020 found no evidence it helps and Andrychowicz et al. 2021 that it can hurt). The gradient is
    0 where the clipped term is strictly larger (V is then outside the trust band and V^clip does not depend on V).

    Args:
        values: (B, L) current critic outputs V_t. old_values: (B, L) at rollout time. returns: (B, L) targets
            (e.g. the lambda-returns of ``advantages.gae``). mask: (B, L) bool.
        aggregation, n_seqs, n_tokens, max_tokens: as in ``aggregate`` (default token-mean).

    Returns:
        (loss float, dloss_dvalues (B, L) float64 zero outside the mask, stats {"value_clip_fraction"}: fraction of
        masked tokens where the clipped term is strictly larger).
    """
    v, v_old, ret = _f64(values), _f64(old_values), _f64(returns)
    mask = _check_shapes(mask, v, v_old, ret)
    err = np.where(mask, v - ret, 0.0)
    if clip is None:
        per, dper = 0.5 * err * err, err
        clipped = np.zeros(mask.shape, dtype=bool)
    else:
        diff = np.where(mask, v - v_old, 0.0)
        err_c = np.where(mask, v_old + _clip(diff, -clip, clip) - ret, 0.0)
        l1, l2 = 0.5 * err * err, 0.5 * err_c * err_c
        use_unclipped = l1 >= l2
        per = np.maximum(l1, l2)
        dper = np.where(use_unclipped, err, err_c * (np.abs(diff) < clip))
        clipped = mask & ~use_unclipped
    loss, weights = aggregate(per, mask, aggregation, n_seqs=n_seqs, n_tokens=n_tokens, max_tokens=max_tokens)
    n_tok = np.count_nonzero(mask)
    stats = {"value_clip_fraction": float(np.count_nonzero(clipped) / n_tok) if n_tok else 0.0}
    return loss, weights * dper, stats


def explained_variance(values, returns, mask) -> float:
    r"""1 - Var[R - V] / Var[R] over the masked entries (population variances).

    The critic diagnostic of OpenAI baselines: 1 is a perfect critic, 0 is no better than a constant, < 0 worse.
    Returns NaN when Var[R] = 0 (or no entry is masked).
    """
    v, ret = _f64(values), _f64(returns)
    mask = _check_shapes(mask, v, ret)
    r, d = ret[mask], (ret - v)[mask]
    if r.size == 0:
        return float("nan")
    var_r = r.var()
    if var_r == 0:
        return float("nan")
    return float(1.0 - d.var() / var_r)


# ----------------------------------------------------------------------------------------------------------------
# KL coefficient controllers
# ----------------------------------------------------------------------------------------------------------------

class AdaptiveKLController:
    r"""Adaptive KL coefficient, Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences") §2.2.

    A log-space proportional controller toward a target KL:

        e_t       = clip((KL_t - KL_target) / KL_target, -0.2, 0.2)
        beta_{t+1} = beta_t (1 + K_beta e_t),     K_beta = n_steps / horizon

    (the paper's K_beta = 0.1; the reference implementation, lm-human-preferences, and TRL/verl write it as
    ``n_steps / horizon`` with n_steps the samples (or steps) since the last update).
    """

    def __init__(self, init_beta: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target ({target}) and horizon ({horizon}) must be positive")
        self.beta = float(init_beta)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: float) -> float:
        """Apply one controller step; returns the new beta."""
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta

    def state_dict(self) -> dict:
        return {"beta": self.beta, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state (ValueError for a non-finite or negative beta, a target or horizon <= 0)."""
        beta = _finite_beta(state)
        target = float(state.get("target", self.target))
        horizon = float(state.get("horizon", self.horizon))
        if not (math.isfinite(target) and target > 0 and math.isfinite(horizon) and horizon > 0):
            raise ValueError(f"KL controller target ({target}) and horizon ({horizon}) must be positive and finite")
        self.beta, self.target, self.horizon = beta, target, horizon


class FixedKLController:
    """Constant KL coefficient with the ``AdaptiveKLController`` interface (``target``/``horizon`` are ignored)."""

    def __init__(self, init_beta: float, target: float | None = None, horizon: float | None = None):
        self.beta = float(init_beta)

    def update(self, current_kl: float, n_steps: float) -> float:
        return self.beta

    def state_dict(self) -> dict:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict) -> None:
        self.beta = _finite_beta(state)


def _finite_beta(state) -> float:
    """The saved beta, refused if it is missing, not a number, non-finite or negative (a NaN beta would silently
    turn the KL term off: every `beta > 0` test is false)."""
    if not isinstance(state, dict) or isinstance(state.get("beta"), bool):
        raise ValueError("KL controller state is not a table with a numeric beta")
    beta = float(state["beta"])
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"KL controller beta must be finite and >= 0, got {beta}")
    return beta


# ----------------------------------------------------------------------------------------------------------------
# Reward shaping
# ----------------------------------------------------------------------------------------------------------------

def soft_overlong_penalty(lengths, max_len: int, cache_len: int) -> np.ndarray:
    r"""DAPO soft overlong punishment, Yu et al. 2025 eq. 13 (added to the correctness reward):

        R_length(y) = 0                                      if |y| <= L_max - L_cache
                    = ((L_max - L_cache) - |y|) / L_cache    if L_max - L_cache < |y| <= L_max
                    = -1                                     if |y| > L_max

    Args:
        lengths: (B,) completion lengths |y|. max_len: L_max. cache_len: L_cache (0 <= L_cache <= L_max;
            0 leaves no ramp: 0 up to L_max, -1 beyond).

    Returns:
        (B,) float64 in [-1, 0].
    """
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"need 0 <= cache_len ({cache_len}) <= max_len ({max_len})")
    y = _f64(lengths)
    start = float(max_len - cache_len)
    ramp = (start - y) / float(max(cache_len, 1))  # only used where start < y <= max_len, empty if cache_len == 0
    return np.where(y <= start, 0.0, np.where(y <= max_len, ramp, -1.0))
