"""Expected gradients of the policy-gradient and KL estimators, exactly, over an enumeration.

Policy gradients (``expected_pg_gradient``): the estimator's gradient is (1/B) sum_i h(y_i) A_i grad log pi(y_i)
(on-policy, ratio 1, before clipping), with h the token aggregation (1/|y| for GRPO's seq-mean-token-mean, 1/L_max
for Dr. GRPO's seq-mean-token-sum-norm, 1 for a token sum). By exchangeability its expectation is
sum_q w_q sum_y pi(y|q) h(y) a_q(y) grad log pi(y|q) with a_q(y) = E[A_i | y_i = y]: for group advantages the G - 1
peers are i.i.d. from pi(.|q), so only the counts of their *distinct reward values* matter; those counts are
multinomial (binomial for a 0/1 reward) and are enumerated, and the project's own advantage function
(``rl/advantages.py``) is evaluated on every configuration. With too many distinct reward values (a learned reward
model) the linear advantages (rloo, group_mean, reinforce) use their closed form E[A | y] = c (r(y) - baseline);
GRPO's std-scaled advantage is then not available exactly (ValueError). The token-mean aggregation (DAPO), whose
weight depends on the whole batch's lengths, is not supported.

KL estimators (``expected_kl_loss_gradient``, ``expected_kl_reward_gradient``, ``expected_kl_value``): the k1/k2/k3
estimators of ``rl/losses.py`` used as a loss (per token or per sequence), folded into the reward, or as values.
"""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

from .. import special
from ..model import TinyLM
from ..rl import advantages as adv
from ..rl import losses
from .enumeration import Enumeration
from .expectations import expectation, grad_token_weights, per_prompt, sequence_weights

__all__ = ["sequence_scale", "expected_advantage", "expected_sequence_coefficients",
           "expected_pg_gradient", "tilt_derivative", "expected_kl_loss_gradient", "expected_kl_reward_gradient",
           "expected_kl_value"]

def sequence_scale(enum: Enumeration, aggregation: str, max_tokens: int | None = None) -> np.ndarray:
    """h(y) (N,): the weight every token of a sequence gets from the aggregation, times the number of sequences
    (the aggregation registry's ``sequence_scale`` fact, ``rl/losses.py``).

    "token-mean" (DAPO) divides by the whole batch's token count, which is not a function of one sequence: it has
    no per-sequence weight and is not supported by the exact expectations.
    """
    h = losses.AGGREGATIONS.lookup(aggregation).sequence_scale
    if h is None:
        supported = [n for n, e in losses.AGGREGATIONS.items() if e.sequence_scale is not None]
        raise ValueError(f"aggregation {aggregation!r} has no per-sequence weight; exact expectations support "
                         f"{', '.join(supported)}")
    return h(enum.lengths, float(max_tokens or enum.max_new_tokens))


def _compositions(total: int, parts: int) -> np.ndarray:
    """All count vectors (C, parts) of non-negative integers summing to `total` (stars and bars)."""
    if parts == 1:
        return np.array([[total]], dtype=np.int64)
    bars = np.array(list(combinations(range(total + parts - 1), parts - 1)), dtype=np.int64).reshape(-1, parts - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), total + parts - 1)], axis=1)
    return np.diff(edges, axis=1) - 1


def expected_advantage(enum: Enumeration, rewards: np.ndarray, advantage: str, G: int, *, std: str = "population",
                       eps: float = 1e-6, max_configs: int = 200_000,
                       greedy_reward: np.ndarray | None = None) -> np.ndarray:
    """a(y) = E[A_i | y_i = y] (N,) for one batch made of every prompt of `enum` with G completions each.

    Any sequence-level estimator of ``rl.advantages.ADVANTAGE_ESTIMATORS``. Group scope (group, group_mean, rloo,
    ...): the G-1 peers of y are i.i.d. from pi(.|q); only how many of them take each distinct reward value matters,
    and those counts are multinomial (binomial for a 0/1 reward). Every count configuration is enumerated and the
    registered advantage function is applied to the group [r(y), peers]. If a prompt has more configurations than
    `max_configs` (many distinct rewards, e.g. a learned RM), the entry's closed form ``expected`` is used (rloo:
    r - mu_q; group_mean: (G-1)/G (r - mu_q)); without one (group, std-scaled) ValueError. Batch scope (reinforce:
    A_i = r_i - mean of the whole batch, B = n_prompts * G) needs the closed form: E[A_i | y] = r - (r + (G-1) mu_q
    + G sum_{q' != q} mu_q') / B.

    An estimator whose ``inputs`` name ``lengths`` (OPO) is enumerated over the peers' distinct (reward, length)
    pairs; one that reads ``greedy_reward`` (ReMax) needs it as (N,) (the reward of each row's prompt's greedy
    completion). A batch-scope closed form may ask (``expected_kw``) for ``p_tie`` (n,), the probability that G
    i.i.d. rewards of a prompt all tie, and ``prompt_index``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (enum.n,):
        raise ValueError(f"rewards must be ({enum.n},), got {r.shape}")
    est = adv.ADVANTAGE_ESTIMATORS.lookup(advantage)
    if est.level != "sequence":
        raise ValueError(f"advantage {advantage!r} is not a sequence-level estimator: no exact E[A | y] here")
    G = int(G)
    if G < max(1, est.min_group):
        raise ValueError(f"group size G={G} too small for advantage {advantage!r}")
    probs = enum.probs
    mu = per_prompt(enum, probs * r) / per_prompt(enum, probs)                     # (n,) E[r | q]
    mq = mu[enum.prompt_index]
    if "greedy_reward" in est.inputs:
        if greedy_reward is None or np.shape(greedy_reward) != (enum.n,):
            raise ValueError(f"advantage {advantage!r} needs greedy_reward ({enum.n},): each prompt's greedy reward")
    if est.scope != "group":                                                       # depends on the whole batch
        return _batch_expected_advantage(enum, r, est, advantage, G, mq, mu)
    hp = adv.AdvantageSettings(std=std, eps=eps)
    with_len = "lengths" in est.inputs
    out = np.empty(enum.n)
    for q in range(enum.n_prompts):
        sl = slice(enum.offsets[q], enum.offsets[q + 1])
        keys = np.stack([r[sl], enum.lengths[sl].astype(np.float64)], axis=1) if with_len else r[sl][:, None]
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        m = len(uniq)
        if comb(G - 1 + m - 1, m - 1) > max_configs:
            if est.expected is None:
                raise ValueError(f"prompt {q} has {m} distinct rewards: too many group configurations to take the "
                                 f"expectation of the {advantage!r} advantage exactly (G={G})")
            out[sl] = est.expected(r[sl], mq[sl], mu, G)
            continue
        greedy = float(greedy_reward[enum.offsets[q]]) if "greedy_reward" in est.inputs else None
        out[sl] = _mean_over_peers(est, uniq, inverse.ravel(), probs[sl], G, hp, greedy)
    return out


def _batch_expected_advantage(enum: Enumeration, r, est, advantage: str, G: int, mq, mu) -> np.ndarray:
    """E[A | y] (N,) of a batch-scope estimator, from its registered closed form (``expected``, ``expected_kw``)."""
    if est.expected is None:
        raise ValueError(f"advantage {advantage!r} depends on the whole batch and has no closed-form E[A | y]")
    kw = {}
    if "p_tie" in est.expected_kw:
        kw["p_tie"] = _tie_probability(enum, r, G)
    if "prompt_index" in est.expected_kw:
        kw["prompt_index"] = enum.prompt_index
    return est.expected(r, mq, mu, G, **kw)


def _mean_over_peers(est, uniq, inverse, probs, G: int, hp, greedy: float | None) -> np.ndarray:
    """E[A | y] on one prompt's rows: the registered advantage of y in the group [y, peers], averaged over every
    count configuration of the G-1 i.i.d. peers on the m distinct keys (reward[, length]) `uniq` (m, 1 or 2) with
    its multinomial probability; `inverse` maps each row to its key."""
    m = len(uniq)
    pv = np.bincount(inverse, weights=probs, minlength=m)
    pv = pv / pv.sum()
    counts = _compositions(G - 1, m)                                                   # (C, m)
    with np.errstate(divide="ignore"):
        logpv = np.log(pv)
    logw = (special.gammaln(G) - special.gammaln(counts + 1.0).sum(axis=1)
            + np.where(counts > 0, counts * logpv[None, :], 0.0).sum(axis=1))
    w = np.exp(logw)                                                                   # (C,) multinomial probs
    groups = _groups(uniq[:, 0], counts)
    kw = {}
    if "lengths" in est.inputs:
        kw["lengths"] = _groups(uniq[:, 1], counts).ravel()
    if greedy is not None:
        kw["greedy_reward"] = np.full(groups.size, greedy)
    a = est.fn(groups.ravel(), G, hp, **kw).reshape(m * len(counts), G)[:, 0].reshape(m, len(counts))
    return (a @ w)[inverse]


def _groups(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(m * C, G): for each of the m values (as y's) and each peer configuration (C, m), the group [value, peers]."""
    C = len(counts)
    peers = np.repeat(np.tile(values, C), counts.ravel()).reshape(C, -1)
    return np.concatenate([np.repeat(values, C)[:, None], np.tile(peers, (len(values), 1))], axis=1)


def _tie_probability(enum: Enumeration, r: np.ndarray, G: int) -> np.ndarray:
    """(n,) P(G i.i.d. rewards of prompt q all tie) = sum_v P(r = v | q)^G over the prompt's distinct rewards."""
    out = np.empty(enum.n_prompts)
    for q in range(enum.n_prompts):
        sl = slice(enum.offsets[q], enum.offsets[q + 1])
        _, inverse = np.unique(r[sl], return_inverse=True)
        pv = np.bincount(inverse.ravel(), weights=enum.probs[sl])
        out[q] = ((pv / pv.sum()) ** G).sum()
    return out


def expected_sequence_coefficients(enum: Enumeration, rewards: np.ndarray, advantage: str, G: int, aggregation: str,
                                   *, max_tokens: int | None = None, std: str = "population", eps: float = 1e-6,
                                   max_configs: int = 200_000, greedy_reward: np.ndarray | None = None) -> np.ndarray:
    """c(y) = h(y) a_q(y) (N,): the expected weight of grad log pi(y) in the policy-gradient estimator, so that
    E[g] = (1/n) sum_q sum_y pi(y|q) c(y) grad log pi(y|q) (see ``expected_pg_gradient``)."""
    h = sequence_scale(enum, aggregation, max_tokens)
    return h * expected_advantage(enum, rewards, advantage, G, std=std, eps=eps, max_configs=max_configs,
                                  greedy_reward=greedy_reward)


def expected_pg_gradient(model: TinyLM, enum: Enumeration, rewards: np.ndarray, advantage: str, G: int,
                         aggregation: str, *, max_tokens: int | None = None, std: str = "population",
                         eps: float = 1e-6, max_configs: int = 200_000,
                         greedy_reward: np.ndarray | None = None) -> np.ndarray:
    """Exact E[g] of the on-policy policy-gradient estimator g = -d loss / d theta (an ascent direction) of
    ``rl.surrogates.policy_loss`` (ratio 1, no clipping active) with advantages ``advantage`` and the given token
    aggregation, for one batch made of every prompt of `enum` with G completions each:

        E[g] = (1/n) sum_q sum_y pi(y|q) h(y) a_q(y) grad log pi(y|q)

    with h from ``sequence_scale`` and a_q from ``expected_advantage``. Compare with grad E[r]
    (``grad_expectation(model, enum, rewards)``).
    """
    c = expected_sequence_coefficients(enum, rewards, advantage, G, aggregation, max_tokens=max_tokens, std=std,
                                       eps=eps, max_configs=max_configs, greedy_reward=greedy_reward)
    return sequence_weights(model, enum, enum.probs * c / enum.n_prompts)


def tilt_derivative(enum: Enumeration, c: np.ndarray, f: np.ndarray, where: np.ndarray | None = None
                    ) -> tuple[np.ndarray, float]:
    """d/de E[f | q, where] at e = 0 when every log pi(y|q) moves by e * c(y) (then renormalised):
    Cov_{pi(.|q, where)}(f, c), per prompt and averaged uniformly.

    This is the expected update seen sequence by sequence (a tabular sequence policy under the natural gradient,
    where the coefficient c(y) of grad log pi(y) is the change of log pi(y)): the view of Liu et al. 2025's
    length-bias argument. Prompts with no row in `where` contribute 0.
    """
    p = enum.probs * (np.ones(enum.n) if where is None else np.asarray(where, dtype=np.float64))
    c, f = np.asarray(c, dtype=np.float64), np.asarray(f, dtype=np.float64)
    Z = per_prompt(enum, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        Ef = per_prompt(enum, p * f) / Z
        Ec = per_prompt(enum, p * c) / Z
        cov = per_prompt(enum, p * (f - Ef[enum.prompt_index]) * (c - Ec[enum.prompt_index])) / Z
    cov = np.where(Z > 0, cov, 0.0)
    return cov, float(cov.mean())


def _kl_derivative(estimator: str):
    return losses.KL_ESTIMATORS.lookup(estimator).fn


def expected_kl_loss_gradient(model: TinyLM, enum: Enumeration, ref: Enumeration, estimator: str,
                              level: str = "token", *, ratio_corrected: bool = False) -> np.ndarray:
    """Exact E[grad of the KL estimator used as a loss] (prompt-averaged), on-policy.

    level="token": the estimator on every token (``rl.losses.kl_loss``, GRPO), summed over the completion:
        E[sum_t k'(logp_t, ref_t) grad logp_t]
    level="sequence": the estimator on the sequence log-probs (DeepSeek-R1's sequence notation):
        E[k'(log pi(y), log ref(y)) grad log pi(y)]
    k' is the estimator's derivative in logp from ``rl.losses``: k1' = 1 (expected gradient 0), k2' = log pi/ref
    (sequence level: grad KL(pi||ref)), k3' = 1 - ref/pi (sequence level: grad KL(ref||pi), the forward KL).
    At token level the k2/k3 gradients miss the terms through the future states (Tang & Munos 2025).
    ratio_corrected: the per-token KL times the on-policy importance ratio rho = pi/pi_old (= 1, with its gradient;
    DeepSeek-V3.2, ``rl.losses.kl_loss(old_logp=...)``): the derivative k' becomes k + k'.
    """
    fn = _kl_derivative(estimator)
    w = enum.probs / enum.n_prompts
    if level == "token":
        k, dk = fn(enum.logp, ref.logp)
        if ratio_corrected:
            dk = k + dk
        return grad_token_weights(model, enum, np.where(enum.mask, w[:, None] * dk, 0.0))
    if level == "sequence":
        _, dk = fn(enum.seq_logp, ref.seq_logp)
        return sequence_weights(model, enum, w * dk)
    raise ValueError(f"level {level!r}: expected 'token' or 'sequence'")


def expected_kl_reward_gradient(model: TinyLM, enum: Enumeration, ref: Enumeration, estimator: str = "k1"
                                ) -> np.ndarray:
    """Exact E[(sum_t k_t) grad log pi(y)]: the penalty sum_t k_t folded into the sequence reward (detached),
    as the gradient of the penalty (to be descended). k1: exactly grad KL(pi||ref)."""
    fn = _kl_derivative(estimator)
    k, _ = fn(enum.logp, ref.logp)
    return sequence_weights(model, enum, enum.probs / enum.n_prompts * np.where(enum.mask, k, 0.0).sum(axis=1))


def expected_kl_value(enum: Enumeration, ref: Enumeration, estimator: str) -> tuple[np.ndarray, float]:
    """Exact E[sum_t k(logp_t, ref_t)] per prompt and averaged (k1, k3: = KL(pi||ref); k2: biased)."""
    k, _ = _kl_derivative(estimator)(enum.logp, ref.logp)
    return expectation(enum, np.where(enum.mask, k, 0.0).sum(axis=1))
