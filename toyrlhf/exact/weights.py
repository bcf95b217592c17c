"""The per-prompt weight of every advantage estimator for a 0/1 reward (issue 16, item 7: the GRPO std question).

A prompt whose completions are correct with probability p contributes, in expectation, to the policy gradient

    sum_y pi(y) a(y) grad log pi(y) = a_1 grad P(correct) + a_0 grad P(wrong) = (a_1 - a_0) grad p

when the expected advantage a(y) = E[A_i | y_i = y] takes the value a_1 on every correct completion and a_0 on every
wrong one (a 0/1 reward, equal lengths). So the estimator weights the prompt by

    w(p) = E[A | correct] - E[A | wrong],

and the push on the prompt's success probability is w(p) grad p; for a two-outcome softmax (logit theta),
grad p = p (1 - p), so w(p) p (1 - p) is the speed at which the prompt's accuracy moves. Closed forms:
RLOO and ReMax 1; the group mean (Dr. GRPO), REINFORCE's batch mean and OPO (equal lengths) (G - 1)/G; GRPO's
std scaling -> 1/sqrt(p (1 - p)) as G -> inf (the up-weighting of very easy and very hard prompts that Liu et al.
2025, Dr. GRPO, call the difficulty bias), exactly a binomial sum at finite G.

Every sequence-level estimator of ``rl.advantages.ADVANTAGE_ESTIMATORS`` is covered (``estimator_weights`` iterates
the registry, so estimators registered later are picked up). The batch is *this prompt alone* with G completions:
batch-scope estimators (reinforce, batch-std, REINFORCE++, GPG) therefore see B = G rows, all from this prompt.
Computed with ``exact.expected_advantage`` on a synthetic two-outcome enumeration (``two_outcome_enumeration``);
an estimator the engine has no exact expectation for (a batch-scope one without closed form) is summed directly
over the binomial law of the G - 1 peers' successes (exact too: the batch is one group). ReMax's greedy completion is
the correct one when p >= 1/2. The token aggregation is a constant here (every completion has one token), so it
does not change w.
"""
from __future__ import annotations

from math import comb

import numpy as np

from .. import tokens as tk
from ..rl import advantages as adv
from .enumeration import Enumeration
from .estimators import expected_advantage

__all__ = ["two_outcome_enumeration", "prompt_weight", "prompt_weight_binomial", "estimator_weights",
           "sequence_estimators", "grpo_weight_limit"]


def two_outcome_enumeration(ps) -> Enumeration:
    """A synthetic enumeration: one prompt per entry of `ps`, each with two one-token completions, the first
    correct (probability p) and the second wrong (1 - p). Rows 2q (correct) and 2q + 1 (wrong)."""
    ps = np.atleast_1d(np.asarray(ps, dtype=np.float64))
    if np.any((ps < 0) | (ps > 1)):
        raise ValueError("success probabilities must lie in [0, 1]")
    n = len(ps)
    prompts = np.tile(np.array([[tk.BOS]], dtype=np.int64), (n, 1))
    comp = np.tile(np.array([tk.OUT_OFFSET + 1, tk.OUT_OFFSET + 2], dtype=np.int64), n)
    tokens = np.stack([np.repeat(prompts[:, 0], 2), comp], axis=1)
    mask = np.zeros(tokens.shape, dtype=bool)
    mask[:, 1] = True
    probs = np.stack([ps, 1.0 - ps], axis=1).ravel()
    with np.errstate(divide="ignore"):
        seq = np.log(probs)
    logp = np.zeros(tokens.shape)
    logp[:, 1] = seq
    q = np.repeat(np.arange(n), 2)
    return Enumeration(prompts=prompts, max_new_tokens=1, temperature=1.0, tokens=tokens, mask=mask, logp=logp,
                       seq_logp=seq, prompt_index=q, offsets=np.arange(0, 2 * n + 1, 2),
                       win_X=np.zeros((1, 1), dtype=np.int64), tok_win=np.zeros((2 * n, 1), dtype=np.int64),
                       win_logp=np.zeros((1, 2)))


def sequence_estimators() -> list[str]:
    """The names of every registered sequence-level advantage estimator, in registry order."""
    return [name for name, e in adv.ADVANTAGE_ESTIMATORS.items() if e.level == "sequence"]


def _kwargs(est, values, G, p):
    kw = {}
    if "lengths" in est.inputs:
        kw["lengths"] = np.ones(values.size)
    if "greedy_reward" in est.inputs:
        kw["greedy_reward"] = np.full(values.size, 1.0 if p >= 0.5 else 0.0)
    return kw


def prompt_weight_binomial(advantage: str, p: float, G: int, *, std: str = "population", eps: float = 1e-6) -> float:
    """w(p) by a direct sum over the binomial law of the G - 1 peers' successes: the registered advantage function
    applied to the group [v, 1 x k, 0 x (G-1-k)] for v in {1, 0} and k = 0 .. G-1 (a batch of this prompt alone)."""
    est = adv.ADVANTAGE_ESTIMATORS.lookup(advantage)
    G = int(G)
    hp = adv.AdvantageSettings(std=std, eps=eps)
    k = np.arange(G)
    pk = np.array([comb(G - 1, int(j)) for j in k], dtype=np.float64) * p ** k * (1.0 - p) ** (G - 1 - k)
    out = []
    for v in (1.0, 0.0):
        groups = np.array([[v] + [1.0] * j + [0.0] * (G - 1 - j) for j in k])
        a = np.array([est.fn(g, G, hp, **_kwargs(est, g, G, p))[0] for g in groups])
        out.append(float(a @ pk))
    return out[0] - out[1]


def prompt_weight(advantage: str, ps, G: int, *, std: str = "population", eps: float = 1e-6) -> np.ndarray:
    """w(p) = E[A | correct] - E[A | wrong] for every p in `ps` (see the module docstring), from
    ``exact.expected_advantage`` on a one-prompt two-outcome enumeration; estimators it has no exact expectation for
    (batch scope without a closed form) through ``prompt_weight_binomial``. p = 0 and p = 1 are limits: the absent
    outcome's conditional expectation is still defined (a group whose own row is that outcome)."""
    est = adv.ADVANTAGE_ESTIMATORS.lookup(advantage)
    if est.level != "sequence":
        raise ValueError(f"advantage {advantage!r} is not a sequence-level estimator")
    ps = np.atleast_1d(np.asarray(ps, dtype=np.float64))
    out = np.empty(len(ps))
    for i, p in enumerate(ps):
        # p in {0, 1}: the engine weighs groups by log-probabilities; nudge inside so both outcomes are defined
        pe = min(max(p, 1e-300), 1.0 - 1e-16)
        enum = two_outcome_enumeration([pe])
        r = np.array([1.0, 0.0])
        greedy = np.full(2, 1.0 if p >= 0.5 else 0.0) if "greedy_reward" in est.inputs else None
        try:
            a = expected_advantage(enum, r, advantage, G, std=std, eps=eps, greedy_reward=greedy)
            out[i] = a[0] - a[1]
        except ValueError:
            if est.scope == "group":
                raise
            out[i] = prompt_weight_binomial(advantage, p, G, std=std, eps=eps)
    return out


def estimator_weights(ps, G: int, names=None, *, std: str = "population", eps: float = 1e-6
                      ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({name: w(ps)} for every registered sequence-level estimator (or `names`), {name: why it was skipped}).
    An estimator is skipped when G is below its ``min_group`` or its function refuses the synthetic batch."""
    weights, skipped = {}, {}
    for name in (sequence_estimators() if names is None else names):
        est = adv.ADVANTAGE_ESTIMATORS.lookup(name)
        if G < max(1, est.min_group):
            skipped[name] = f"G={G} < min_group={est.min_group}"
            continue
        try:
            weights[name] = prompt_weight(name, ps, G, std=std, eps=eps)
        except (ValueError, TypeError) as err:
            skipped[name] = str(err).splitlines()[0]
    return weights, skipped


def grpo_weight_limit(ps) -> np.ndarray:
    """GRPO's large-G weight 1/sqrt(p (1 - p)) (population std, eps -> 0)."""
    ps = np.asarray(ps, dtype=np.float64)
    return 1.0 / np.sqrt(ps * (1.0 - ps))
