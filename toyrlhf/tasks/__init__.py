"""Synthetic tasks: vocabulary, prompts, gold reward, pretraining corpus and demonstrations.

Every task is small enough that the exact engine can enumerate all (V-2)^T completions of a prompt.
A task bundles what the pipeline needs at each stage:

    pretraining  `corpus_probs` — the corpus generator as an explicit next-token distribution. Sampling
                 (`sample_corpus`) and the exact corpus entropy (`corpus_entropy`, the loss floor of a
                 perfect pretrained model) are both computed from it, so they cannot disagree.
    SFT          `demonstrations` — what a "human" would write.
    RM / RL      `reward_components` and `reward_weights` — the hidden gold reward is their weighted sum;
                 `is_correct` (rule-verifiable tasks) and `step_rewards` (process supervision).

The corpus generator of every task only looks at the last 4 tokens of prompt + completion (BOS-padded
on the left, as the model sees them), so a TinyLM with a 4-token context can match it exactly.

Tasks:
    pref    no rule: a hidden gold reward scores on-topic, varied, 3-word completions (the default)
    arith   verifiable two-step modular arithmetic, with outcome, format and step rewards (R1 style)
    length  verifiable, with correctness independent of length: a test bed for GRPO's length bias
    arith_hard  arith whose b = 4 prompts are demonstrated with a misconception (few SFT successes)
"""
from __future__ import annotations

from .arith import ArithHardTask, ArithTask
from .base import Task
from .length import LengthTask
from .pref import PrefTask

__all__ = ["Task", "PrefTask", "ArithTask", "ArithHardTask", "LengthTask", "TASKS", "DEFAULT_TASK", "get_task"]

TASKS: dict[str, Task] = {task.name: task for task in (PrefTask(), ArithTask(), LengthTask(),
                                                       ArithHardTask())}
DEFAULT_TASK = "pref"


def get_task(name: str) -> Task:
    """The registered task called `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
