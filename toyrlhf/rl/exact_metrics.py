"""The `toyrlhf run --exact` hook: exact reward, KL, entropy and length of the current policy, every few steps, and
the entropy mechanism (Cui et al. 2025): the first-order entropy change of the update against the covariance of
log-probability and advantage.

Entropy metrics (H = the prompt-averaged *sequence* entropy, ``exact_entropy``; c(y) = h(y) a(y) the expected weight
of grad log pi(y) in the run's policy-gradient estimator, ``exact.expected_sequence_coefficients``, on the reward
the estimator sees, r [- beta sum_t k_t]; only for a sequence-level advantage the engine takes exactly):

    exact_entropy_cov            mean_q Cov_{pi(.|q)}(log pi(y|q), c(y))
    exact_entropy_change_cov     -exact_entropy_cov: dH/d eta when every log pi(y|q) moves by eta c(y) (a tabular
                                 softmax policy under natural policy gradient; Cui et al. 2025)
    exact_entropy_change_grad    grad_theta H . E[g]: dH/d eta for plain gradient ascent theta += eta E[g] on the
                                 TinyLM's parameters (E[g] the exact expected policy-gradient, before clipping)
    exact_entropy_change         H(theta) - H(theta_prev), theta_prev the parameters at the previous evaluation
    exact_entropy_change_first_order   grad H(theta_prev) . (theta - theta_prev), its first-order prediction
                                 (the last two from the second evaluation on)
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import exact
from . import advantages as adv_mod
from . import losses
from ..tasks import get_task

__all__ = ["training_metrics", "entropy_mechanism"]


def entropy_mechanism(policy, enum, rewards: np.ndarray, advantage: str, G: int, aggregation: str, *,
                      max_tokens: int | None = None, std: str = "population", eps: float = 1e-6) -> dict:
    """{exact_entropy_cov, exact_entropy_change_cov, exact_entropy_change_grad} at the current policy (module
    docstring) for the given sequence-level advantage estimator, group size and aggregation, and the entropy
    gradient ``grad_entropy`` (flat) under key "_grad_entropy"."""
    c = exact.expected_sequence_coefficients(enum, rewards, advantage, G, aggregation, max_tokens=max_tokens,
                                             std=std, eps=eps)
    _, cov = exact.tilt_derivative(enum, c, enum.seq_logp)
    g = exact.sequence_weights(policy, enum, enum.probs * c / enum.n_prompts)
    gh = exact.grad_entropy(policy, enum)
    return {"exact_entropy_cov": cov, "exact_entropy_change_cov": -cov,
            "exact_entropy_change_grad": float(gh @ g), "_grad_entropy": gh}


def training_metrics(cfg) -> Callable:
    """The `toyrlhf run --exact` hook: fn(trainer) -> {exact_reward, exact_gold_reward, exact_kl, exact_entropy,
    exact_response_length[, exact_accuracy]}, exact under the current policy (at the run's temperature) against
    trainer.models.reference, uniform over the task's prompts; the proxy reward is trainer.reward_fn.

    With a sequence-level advantage the engine takes exactly, also the entropy-mechanism metrics of the module
    docstring (exact_entropy_cov, exact_entropy_change_cov, exact_entropy_change_grad, and from the second call
    exact_entropy_change, exact_entropy_change_first_order).

    Raises UserError at once if the task has more than exact.MAX_SEQUENCES completions. The completions and their
    rewards do not change during a run (the reward model is frozen), so they are scored once.
    """
    task = get_task(cfg.task)
    exact.check_size(len(task.prompts()), task.n_out, task.max_new_tokens, what=f"task {cfg.task!r} (--exact)")
    temperature = float(cfg.temperature)
    cache: dict = {}

    def fn(trainer) -> dict:
        m = trainer.models
        enum = exact.enumerate_task(m.policy, task, temperature)
        _score_once(cache, task, trainer.reward_fn, enum)
        ref = exact.rescore(m.reference, enum, temperature)
        out = {
            "exact_reward": exact.expectation(enum, cache["proxy"])[1],
            "exact_gold_reward": exact.expectation(enum, cache["gold"])[1],
            "exact_kl": exact.kl_divergences(enum, ref)["reverse_mean"],
            "exact_entropy": exact.entropy(enum)[1],
            "exact_response_length": exact.expectation(enum, enum.lengths)[1],
        }
        if cache["correct"] is not None:
            out["exact_accuracy"] = exact.expectation(enum, cache["correct"])[1]
        out.update(_entropy_metrics(cfg, task, cache, trainer, enum, ref, out["exact_entropy"]))
        return out

    return fn


def _score_once(cache: dict, task, reward_fn, enum) -> None:
    """Gold reward, proxy reward and correctness of every completion, kept in `cache` while the reward function
    stays the same object (the completions are the same at every call: the enumeration lists them all)."""
    key = id(reward_fn)
    if cache.get("key") == key:
        return
    prompts, comps = enum.split()
    cache.update(key=key, gold=task.gold_reward(prompts, comps),
                 proxy=np.asarray(reward_fn(enum.tokens, enum.mask, prompts, comps), np.float64),
                 correct=task.is_correct(prompts, comps).astype(np.float64) if task.verifiable else None)


def _entropy_metrics(cfg, task, cache: dict, trainer, enum, ref, H: float) -> dict:
    """The entropy-mechanism metrics (module docstring) on the reward the run's estimator sees, {} when the engine
    has no exact E[A | y] for it; the change since the previous call from the parameters kept in `cache`."""
    name = getattr(cfg, "advantage", None)
    if name is None or name not in adv_mod.ADVANTAGE_ESTIMATORS or \
            adv_mod.ADVANTAGE_ESTIMATORS.lookup(name).level != "sequence":
        return {}
    R = cache["proxy"]
    beta = float(getattr(getattr(trainer, "kl_ctl", None), "beta", 0.0) or 0.0)
    if getattr(cfg, "kl", "none") == "reward" and beta > 0:
        R = R + losses.kl_penalty_rewards(enum.logp, ref.logp, enum.mask, beta, cfg.kl_estimator).sum(axis=1)
    try:
        em = entropy_mechanism(trainer.models.policy, enum, R, name, cfg.group_size, cfg.aggregation,
                               max_tokens=task.max_new_tokens, std=cfg.std, eps=cfg.adv_eps)
    except ValueError:                                 # no exact E[A | y] (batch scope, many reward values)
        return {}
    gh = em.pop("_grad_entropy")
    theta = trainer.models.policy.flat.copy()
    prev = cache.get("entropy_prev")
    if prev is not None and prev[0].shape == theta.shape:
        em["exact_entropy_change"] = H - prev[2]
        em["exact_entropy_change_first_order"] = float(prev[1] @ (theta - prev[0]))
    cache["entropy_prev"] = (theta, gh, H)
    return em
