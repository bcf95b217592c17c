"""The `toyrlhf run --exact` hook: exact reward, KL, entropy and length of the current policy, every few steps."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import exact
from ..tasks import get_task

__all__ = ["training_metrics"]


def training_metrics(cfg) -> Callable:
    """The `toyrlhf run --exact` hook: fn(trainer) -> {exact_reward, exact_gold_reward, exact_kl, exact_entropy,
    exact_response_length[, exact_accuracy]}, exact under the current policy (at the run's temperature) against
    trainer.models.reference, uniform over the task's prompts; the proxy reward is trainer.reward_fn.

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
        key = id(trainer.reward_fn)
        if cache.get("key") != key:
            prompts, comps = enum.split()
            cache.update(key=key, gold=task.gold_reward(prompts, comps),
                         proxy=np.asarray(trainer.reward_fn(enum.tokens, enum.mask, prompts, comps), np.float64),
                         correct=task.is_correct(prompts, comps).astype(np.float64) if task.verifiable else None)
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
        return out

    return fn
