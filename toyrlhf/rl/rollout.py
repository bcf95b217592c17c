"""Rollouts: G completions per prompt from the sampling policy, their log-probs under the policy and the frozen
reference, and their rewards (learned reward model or the task's rule), with the gold reward always alongside."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import tokens as tk
from ..model import TinyLM
from ..tasks import Task
from .losses import soft_overlong_penalty


@dataclass
class Rollout:
    """One batch of B = n_prompts * G sequences; rows g*G .. g*G+G-1 share a prompt."""

    tokens: np.ndarray        # (B, L) int
    mask: np.ndarray          # (B, L) bool  completion tokens, EOS included
    old_logp: np.ndarray      # (B, L)       log pi_old (the sampling policy), temperature-scaled
    ref_logp: np.ndarray      # (B, L)       log pi_ref, same temperature
    entropy: np.ndarray       # (B, L)       entropy of pi_old's next-token distribution
    reward: np.ndarray        # (B,)         the reward the algorithm optimises (before any KL shaping)
    gold_reward: np.ndarray   # (B,)         the task's hidden gold reward (logged, optimised only if reward == gold)
    lengths: np.ndarray       # (B,)         completion lengths |o_i|
    truncated: np.ndarray     # (B,)         no EOS within max_new_tokens
    correct: np.ndarray | None  # (B,)       verifiable tasks: the rule's verdict
    group_size: int
    sampler_logp: np.ndarray | None = None   # (B, L) log mu as the sampler reported it (sampler_temperature set)

    def select_groups(self, groups: np.ndarray) -> "Rollout":
        rows = (groups[:, None] * self.group_size + np.arange(self.group_size)[None, :]).ravel()
        kw = {k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        return Rollout(**kw)

    @staticmethod
    def concat(parts: list["Rollout"]) -> "Rollout":
        first = parts[0]
        kw = {}
        for k, v in first.__dict__.items():
            kw[k] = np.concatenate([getattr(p, k) for p in parts]) if isinstance(v, np.ndarray) else v
        return Rollout(**kw)

    @property
    def n_groups(self) -> int:
        return self.tokens.shape[0] // self.group_size


REWARD_SOURCES = ("auto", "rm", "gold")
"""The knob ``reward``: 'rm' (the learned reward model), 'gold' (the task's rule / gold reward), 'auto' (rm for
preference tasks, the rule for verifiable ones)."""


class RewardFn:
    """The reward the policy is trained on: a learned RM's normalised score, or a weighted sum of rule rewards
    (DeepSeek-R1 §2.2.2: accuracy + format), plus DAPO's soft overlong punishment when enabled."""

    def __init__(self, task: Task, source: str, reward_model=None, weights: dict[str, float] | None = None,
                 overlong_cache: int | None = None):
        self.task, self.source, self.rm = task, source, reward_model
        self.weights = dict(task.reward_weights)
        unknown = set(weights or {}) - set(self.weights)
        if unknown:
            raise ValueError(f"reward_weights: task {task.name!r} has no component {sorted(unknown)[0]!r}; "
                             f"it has {', '.join(self.weights)}")
        self.weights.update(weights or {})
        self.overlong_cache = overlong_cache

    def __call__(self, tokens, mask, prompts, completions) -> np.ndarray:
        if self.source == "rm":
            r = self.rm.score(tokens, mask)
        else:
            comps = self.task.reward_components(prompts, completions)
            r = sum(w * comps[k] for k, w in self.weights.items())
        if self.overlong_cache is not None:
            L = self.task.max_new_tokens
            r = r + soft_overlong_penalty(tk.completion_lengths(completions), L, self.overlong_cache)
        return np.asarray(r, dtype=np.float64)


def greedy_decode(policy: TinyLM, prompts: np.ndarray, max_new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The greedy completion of each prompt (argmax at every step; the temperature does not change it): tokens and
    completion mask, (B, P + T) each, PAD after EOS (ReMax's baseline response, Li et al. 2023)."""
    prompts = np.asarray(prompts, dtype=np.int64)
    B, P = prompts.shape
    T = int(max_new_tokens)
    tokens = np.full((B, P + T), tk.PAD, dtype=np.int64)
    tokens[:, :P] = prompts
    mask = np.zeros((B, P + T), dtype=bool)
    alive = np.ones(B, dtype=bool)
    rows = np.arange(B)
    for t in range(T):
        pick = np.argmax(policy.next_logprobs(policy.contexts(tokens, rows, np.full(B, P + t - 1))), axis=1)
        tokens[alive, P + t] = pick[alive] + tk.OUT_OFFSET
        mask[alive, P + t] = True
        alive &= (pick + tk.OUT_OFFSET) != tk.EOS
        if not alive.any():
            break
    return tokens, mask


def greedy_rewards(policy: TinyLM, task: Task, reward_fn: RewardFn, tokens: np.ndarray, G: int) -> np.ndarray:
    """(B,) r(x, greedy(x)) for each row of a rollout's `tokens` (rows grouped by prompt in groups of G): one greedy
    decode per prompt, scored by the run's reward, repeated over the group."""
    prompts = tokens[::G, :task.prompt_len]
    g_tokens, g_mask = greedy_decode(policy, prompts, task.max_new_tokens)
    _, comps = tk.split(g_tokens, task.prompt_len)
    return np.repeat(reward_fn(g_tokens, g_mask, prompts, comps), G)


def rollout(policy: TinyLM, reference: TinyLM, task: Task, reward_fn: RewardFn, n_prompts: int, G: int,
            rng: np.random.Generator, temperature: float = 1.0, sampler_temperature: float | None = None) -> Rollout:
    """Sample G completions for each of n_prompts prompts and score them. With `sampler_temperature` the sampler
    draws from mu = pi at that temperature (the rollout-training mismatch) and its log-probs are kept as
    ``sampler_logp``; pi_old and pi_ref stay at `temperature`."""
    prompts = np.repeat(task.sample_prompts(n_prompts, rng), G, axis=0)            # (B, P)
    s = policy.sample(prompts, task.max_new_tokens, rng,
                      temperature if sampler_temperature is None else sampler_temperature)
    tokens, mask = s.tokens, s.mask
    # pi_old is recomputed by the training forward pass, not taken from the sampler, so that the ratio of the
    # first minibatch is exactly 1 (the sampler batches rows differently, which changes float round-off).
    old_logp, entropy, _ = policy.logp_forward(tokens, mask, temperature)
    ref_logp, _, _ = reference.logp_forward(tokens, mask, temperature)
    _, completions = tk.split(tokens, task.prompt_len)
    gold = task.gold_reward(prompts, completions)
    reward = gold if reward_fn.source == "gold" and reward_fn.overlong_cache is None and \
        reward_fn.weights == task.reward_weights else reward_fn(tokens, mask, prompts, completions)
    return Rollout(tokens=tokens, mask=mask, old_logp=old_logp, ref_logp=ref_logp, entropy=entropy,
                   reward=reward, gold_reward=gold, lengths=tk.completion_lengths(completions),
                   truncated=tk.is_truncated(completions),
                   correct=task.is_correct(prompts, completions) if task.verifiable else None, group_size=G,
                   sampler_logp=None if sampler_temperature is None else s.logp)
