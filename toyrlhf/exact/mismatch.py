"""Rollout-training mismatch, exactly: the sampler draws from mu (here pi at another temperature, as a rollout engine
with different numerics or sampling settings would), the trainer differentiates pi. Each correction the libraries ship
is a per-token weight c_t(y) on grad log pi(y_t); its expected gradient E_{y~mu}[sum_t c_t(y) A(y) grad log pi(y_t)]
is a finite sum over the enumerated completions, compared with the true grad E_pi[r].

Corrections (w_t = pi(y_t)/mu(y_t), W = prod_t w_t, A = r - E_mu[r | q]):

    none        c_t = A                                        (ignore the mismatch)
    seq_is      c_t = W A                                      (full sequence importance sampling: unbiased)
    token_tis   c_t = min(w_t, C) A                            (token truncated IS; Yao et al. 2025, "Your Efficient
                                                                RL Framework Secretly Brings You Off-Policy RL
                                                                Training"; verl rollout_is=token, OpenRLHF tis)
    seq_tis     c_t = min(W, C) A                              (sequence truncated IS; verl rollout_is=sequence)
    token_mask  c_t = w_t I[lo <= w_t <= hi] A                 (token masked IS, IcePop: Ling Team 2025, Ring-1T;
                                                                OpenRLHF icepop; verl rollout_rs=token)
    seq_mask    c_t = W I[lo <= W <= hi] A                     (sequence masked IS, MIS; Liu et al. 2025, "When
                                                                Speed Kills Stability"; verl rollout_rs=sequence)
    geo_mask    c_t = min(w_t, C) I[lo <= W^(1/|y|) <= hi] A   (geometric-mean sequence mask; verl rollout_rs=geometric,
                                                                OpenRLHF seq-mask-tis)

Bias and variance are measured along the true gradient's direction u = g/|g|: the single-sample estimator
f(y) = sum_t c_t(y) A(y) grad log pi(y_t) has E[f] u (exact) and Var[f u] = E_mu[(f u)^2] - (E[f] u)^2 (prompts
uniform), with grad log pi(y_t) u the directional derivative of each token's log-prob (central differences in theta).
Imports only tokens, model, errors, rl/losses (the correction weights) and the exact engine's own modules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import TinyLM
from ..rl.rollout_correction import ROLLOUT_CORRECTIONS, rollout_correction_weights
from .enumeration import Enumeration, enumerate_task, rescore
from .expectations import grad_expectation, grad_token_weights, per_prompt

CORRECTIONS = ROLLOUT_CORRECTIONS.names()
"""The corrections, in the order of ``rl.rollout_correction.ROLLOUT_CORRECTIONS`` (the trainer's ``rollout_correction`` knob)."""

correction_weights = rollout_correction_weights
"""(N, L) the per-token weight c_t / A of a correction: the trainer's own function (``rl.rollout_correction``)."""


def expected_corrected_gradient(policy: TinyLM, enum: Enumeration, r: np.ndarray, mu: Enumeration, kind: str, *,
                                C: float = 2.0, lo: float = 0.5, hi: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """E_{q uniform, y ~ mu}[sum_t c_t(y) A(y) grad log pi(y_t)] with A = r - E_mu[r | q], exactly, and the (N, L)
    per-token coefficients c_t A. `mu` is the sampler's rescoring of `enum` (``rescore(..., temperature=T)``).

    Any baseline independent of y with mean E_mu[r | q] (RLOO's leave-one-out mean over the group's other samples)
    has the same expected gradient, so this is also the trainer's expected update with advantage=rloo."""
    log_w = np.where(enum.mask, enum.logp - mu.logp, 0.0)
    A = r - per_prompt(enum, mu.probs * r)[enum.prompt_index]
    c = correction_weights(kind, log_w, enum.mask, C=C, lo=lo, hi=hi) * A[:, None]
    return grad_token_weights(policy, enum, (1.0 / enum.n_prompts) * mu.probs[:, None] * c), c


@dataclass
class MismatchRow:
    sampler_temperature: float
    correction: str
    cosine: float          # cos(E[f], grad E_pi[r])
    norm_ratio: float      # |E[f]| / |grad E_pi[r]|
    bias: float            # |E[f] - g| / |g|
    std_along: float       # sqrt(Var[f u]) / |g|: one sample's spread along u, in units of |g|
    tv: float              # mean over prompts of TV(pi, mu)


def mismatch_table(policy: TinyLM, task, rewards_fn, temperatures=(1.0, 1.1, 1.25, 1.5, 2.0), *,
                   corrections=CORRECTIONS, C: float = 2.0, lo: float = 0.5, hi: float = 2.0,
                   h: float = 1e-5) -> list[MismatchRow]:
    """One row per (sampler temperature, correction); the trainer's pi is `policy` at temperature 1.
    ``rewards_fn(enum) -> (N,)`` scores the enumerated completions (e.g. the task's gold reward)."""
    enum = enumerate_task(policy, task)
    r = np.asarray(rewards_fn(enum), np.float64)
    g = grad_expectation(policy, enum, r)
    gn = float(np.linalg.norm(g))
    u = g / gn
    d = _directional_logp(policy, enum, u, h)            # (N, L) grad log pi(y_t) . u
    wq = 1.0 / enum.n_prompts
    rows = []
    for tau in temperatures:
        mu = rescore(policy, enum, temperature=tau)
        tv = float(0.5 * per_prompt(enum, np.abs(enum.probs - mu.probs)).mean())
        for kind in corrections:
            Ef, c = expected_corrected_gradient(policy, enum, r, mu, kind, C=C, lo=lo, hi=hi)
            proj = (c * d).sum(axis=1)                                  # f(y) . u
            mean_u = float(Ef @ u)
            var_u = float((wq * mu.probs * proj ** 2).sum() - mean_u ** 2)
            en = float(np.linalg.norm(Ef))
            rows.append(MismatchRow(float(tau), kind, float(Ef @ g) / (en * gn) if en else 0.0, en / gn,
                                    float(np.linalg.norm(Ef - g)) / gn, float(np.sqrt(max(var_u, 0.0))) / gn, tv))
    return rows


def _directional_logp(policy: TinyLM, enum: Enumeration, u: np.ndarray, h: float) -> np.ndarray:
    """(N, L) d/ds log pi_{theta + s u}(y_t) at s = 0 by central differences (0 outside the mask)."""
    theta = policy.flat.copy()
    model = policy.copy()
    try:
        model.set_flat(theta + h * u)
        plus = rescore(model, enum).logp
        model.set_flat(theta - h * u)
        minus = rescore(model, enum).logp
    finally:
        model.set_flat(theta)
    return np.where(enum.mask, (plus - minus) / (2 * h), 0.0)


def format_table(rows: list[MismatchRow]) -> str:
    """A markdown table of `mismatch_table`'s rows."""
    out = ["| sampler T | TV(pi, mu) | correction | cosine | norm ratio | bias | std (1 sample) |",
           "|---|---|---|---|---|---|---|"]
    for m in rows:
        out.append(f"| {m.sampler_temperature:g} | {m.tv:.3f} | {m.correction} | {m.cosine:.4f} | "
                   f"{m.norm_ratio:.3f} | {m.bias:.3f} | {m.std_along:.2f} |")
    return "\n".join(out)
