"""The exact optimum of KL-regularised RL, its reward-vs-sqrt(KL) frontier, and best-of-n on the same axes.

For one prompt q, the objective J(pi) = E_pi[r] - beta KL(pi || pi_ref) over *all* distributions on q's completions is
maximised by the Gibbs tilt of the reference (Ziegler et al. 2019; Rafailov et al. 2023, DPO, eq. 4):

    pi*(y|q) = pi_ref(y|q) exp(r(y)/beta) / Z_q,      Z_q = E_ref[exp(r/beta)]
    J(pi*)   = beta log Z_q = E_pi*[r] - beta KL(pi* || pi_ref)          (the value)
    J(pi)    = J(pi*) - beta KL(pi || pi*)                               (so pi* is the unique maximiser)

The prompts are independent, so the prompt-averaged optimum is pi* on every prompt. Every quantity is computed in
log space (log-sum-exp), so any beta > 0 works; beta = 0 is the limit (pi_ref restricted to the argmax set) and
beta = inf is pi_ref itself.

Frontier: as beta runs from inf to 0, (KL(pi*||ref), E_pi*[r]) traces the largest prompt-averaged reward any policy
reaches at that prompt-averaged KL: a policy with E_pi[r] > E_pi*_beta[r] and KL(pi||ref) <= KL(pi*_beta||ref) would
have J_beta(pi) > J_beta(pi*_beta). Gao et al. 2022 plot reward against sqrt(KL); so does ``frontier``.

Best-of-n (Beirami et al. 2024; Gao et al. 2022): ``best_of_n_point`` puts the exact best-of-n policy (ranked by the
proxy reward, ties shared at random) on the same axes, with its gold reward.

Imports only the enumeration and expectations modules of the exact engine (numpy and scipy otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import special
from .enumeration import Enumeration
from .expectations import best_of_n, best_of_n_kl_bound, per_prompt

__all__ = ["Optimum", "optimal_policy", "optimum", "frontier", "frontier_reward_at", "total_variation",
           "best_of_n_point"]


class PromptMeans:
    """The uniform prompt means of per-prompt figures value, reward, kl (n,) and gold (n,) or None (``Optimum``,
    ``window.WindowOptimum``)."""

    @property
    def value_mean(self) -> float:
        return float(self.value.mean())

    @property
    def reward_mean(self) -> float:
        return float(self.reward.mean())

    @property
    def kl_mean(self) -> float:
        return float(self.kl.mean())

    @property
    def gold_mean(self) -> float | None:
        return None if self.gold is None else float(self.gold.mean())


@dataclass
class Optimum(PromptMeans):
    """pi* for one beta over an enumeration's prompts: log pi*(y|q) per row and its figures, per prompt (n,) and
    averaged uniformly over prompts."""

    beta: float
    logp: np.ndarray
    value: np.ndarray
    reward: np.ndarray
    kl: np.ndarray
    gold: np.ndarray | None = None

    @property
    def probs(self) -> np.ndarray:
        """(N,) pi*(y|q)."""
        return np.exp(self.logp)


def _segments(enum: Enumeration):
    return [slice(enum.offsets[q], enum.offsets[q + 1]) for q in range(enum.n_prompts)]


def optimal_policy(ref: Enumeration, rewards: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(log pi*(y|q) (N,), log Z_q (n,)) for pi* = pi_ref exp(r/beta) / Z_q, Z_q = E_ref[exp(r/beta)]
    (Ziegler et al. 2019; Rafailov et al. 2023 eq. 4), by log-sum-exp per prompt.

    beta = 0: the limit pi_ref(y | r(y) = max r) (log Z_q is then returned as max r's log-mass under pi_ref, and
    the value is max_y r); beta = inf: pi_ref (log Z_q = 0). Completions with pi_ref(y) = 0 keep pi*(y) = 0.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (ref.n,):
        raise ValueError(f"rewards must be ({ref.n},), got {r.shape}")
    beta = float(beta)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    lref = ref.seq_logp
    logp = np.empty(ref.n)
    logz = np.empty(ref.n_prompts)
    for q, sl in enumerate(_segments(ref)):
        if np.isinf(beta):
            a = lref[sl].copy()
        elif beta == 0:
            rs = r[sl]
            top = np.isclose(rs, rs[np.isfinite(lref[sl])].max(), rtol=0.0, atol=1e-12) & np.isfinite(lref[sl])
            a = np.where(top, lref[sl], -np.inf)
        else:
            a = lref[sl] + r[sl] / beta
        logz[q] = special.logsumexp(a)
        logp[sl] = a - logz[q]
    return logp, logz


def optimum(ref: Enumeration, rewards: np.ndarray, beta: float, gold: np.ndarray | None = None) -> Optimum:
    """pi* of E[r] - beta KL(pi || pi_ref) and its figures per prompt:

        value_q  = beta log E_ref[exp(r/beta)]  (= E_pi*[r] - beta KL(pi*||ref); beta = 0: max_y r)
        reward_q = E_pi*[r],  kl_q = KL(pi* || pi_ref) = E_pi*[r]/beta - log Z_q,  gold_q = E_pi*[gold]

    KL is summed directly from the log-probabilities (no division by beta), so it is exact at small beta.
    """
    r = np.asarray(rewards, dtype=np.float64)
    logp, logz = optimal_policy(ref, r, beta)
    p = np.exp(logp)
    reward = per_prompt(ref, p * r)
    with np.errstate(invalid="ignore"):
        d = np.where(p > 0, logp - ref.seq_logp, 0.0)
    kl = per_prompt(ref, p * d)
    if np.isinf(beta):
        value = reward.copy()
    elif beta == 0:
        value = reward.copy()
    else:
        value = beta * logz
    g = None if gold is None else per_prompt(ref, p * np.asarray(gold, dtype=np.float64))
    return Optimum(beta=float(beta), logp=logp, value=value, reward=reward, kl=kl, gold=g)


def frontier(ref: Enumeration, rewards: np.ndarray, betas, gold: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The exact optimal reward-vs-KL frontier over a beta sweep (Gao et al. 2022 draw it against sqrt(KL)):
    for each beta, the prompt-averaged E_pi*[r], KL(pi*||ref), sqrt(KL), the value beta log Z and E_pi*[gold].
    Sorted by decreasing beta (increasing KL)."""
    betas = np.sort(np.asarray(betas, dtype=np.float64))[::-1]
    rows = [optimum(ref, rewards, b, gold) for b in betas]
    out = {"beta": betas, "reward": np.array([o.reward_mean for o in rows]),
           "kl": np.array([o.kl_mean for o in rows]), "value": np.array([o.value_mean for o in rows])}
    out["sqrt_kl"] = np.sqrt(np.maximum(out["kl"], 0.0))
    if gold is not None:
        out["gold"] = np.array([o.gold_mean for o in rows])
    return out


def frontier_reward_at(front: dict, kl: float) -> float:
    """The frontier's reward at prompt-averaged KL `kl`, linearly interpolated between sweep points (a lower bound
    of the true frontier there, which is concave in KL: R(KL) = min_beta [V(beta) + beta KL])."""
    return float(np.interp(kl, front["kl"], front["reward"]))


def total_variation(enum: Enumeration, logp_other: np.ndarray) -> tuple[np.ndarray, float]:
    """TV(pi, pi') = 1/2 sum_y |pi(y|q) - pi'(y|q)| per prompt and averaged, pi from `enum`, pi' from log-probs on
    the same rows (e.g. ``optimum(...).logp``)."""
    d = np.abs(enum.probs - np.exp(np.asarray(logp_other, dtype=np.float64)))
    per = 0.5 * per_prompt(enum, d)
    return per, float(per.mean())


def best_of_n_point(ref: Enumeration, proxy: np.ndarray, n: int, gold: np.ndarray | None = None) -> dict:
    """Best-of-n from pi_ref ranked by the proxy reward (ties shared uniformly at random), exactly, prompt-averaged:

        pi_bon(y) = F(y)^n - F-(y)^n  (per tie class; Beirami et al. 2024),  KL(pi_bon || pi_ref),
        E_bon[proxy], E_bon[gold], and the bound log n - (n-1)/n (Stiennon et al. 2020; Gao et al. 2022), which
        KL(pi_bon||ref) never exceeds (Beirami et al. 2024, Thm. 1).

    Returns {n, kl, sqrt_kl, reward, gold, kl_bound, probs (N,)}.
    """
    proxy = np.asarray(proxy, dtype=np.float64)
    probs = np.empty(ref.n)
    kls = np.empty(ref.n_prompts)
    p_ref = ref.probs
    for q, sl in enumerate(_segments(ref)):
        p = p_ref[sl] / p_ref[sl].sum()
        b = best_of_n(p, proxy[sl], n)
        probs[sl] = b
        keep = b > 0
        kls[q] = float(np.sum(b[keep] * (np.log(b[keep]) - np.log(p[keep]))))
    out = {"n": int(n), "kl": float(kls.mean()), "reward": float(per_prompt(ref, probs * proxy).mean()),
           "kl_bound": best_of_n_kl_bound(n), "probs": probs}
    out["sqrt_kl"] = float(np.sqrt(max(out["kl"], 0.0)))
    out["gold"] = None if gold is None else float(per_prompt(ref, probs * np.asarray(gold, np.float64)).mean())
    return out
