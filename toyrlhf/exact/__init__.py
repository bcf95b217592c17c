"""Exact engine: enumerate every completion of every prompt, then compute expectations and gradients exactly.

The vocabularies and lengths of toyrlhf's tasks are tiny, so the set of completions of a prompt (each ended by EOS
or cut at ``max_new_tokens``) is small enough to list. Every quantity a Monte-Carlo estimator targets is then a
finite sum over them, and uniform averages over the task's prompts (the prompt distribution of every task).

    enumeration.py   the prefix tree, ``Enumeration`` (every completion with its exact log-probability), rescoring
    expectations.py  E_pi[f], KL(pi||ref), KL(ref||pi), entropy and their exact gradients; pass@k, best-of-n
    estimators.py    the exact expected gradient of each policy-gradient and KL estimator of ``rl/``
    optimum.py       the KL-regularised optimum pi* = pi_ref exp(r/beta)/Z, its frontier, best-of-n on its axes
    voting.py        exact maj@k (majority vote over final answers, ties at random) and pass@k curves
    fixed_points.py  where each KL placement converges: the stationary points of the expected update (tabular)
    weights.py       the per-prompt weight w(p) of every advantage estimator for a 0/1 reward (the GRPO std question)
    values.py        the exact V^pi(s_t) of the token-level MDP PPO's critic and GAE estimate (`critic=exact`)
    window.py        the best policy a k-token context window can represent (E[r] - beta KL over windowed policies)

The engine imports only ``tokens``, ``model``, ``errors`` and the pure-NumPy ``rl/advantages.py`` and
``rl/losses.py``: never the stages, the presets, the reward model or the trainer. The `toyrlhf check` report built
on it is ``toyrlhf/check.py``; the ``--exact`` training hook is ``toyrlhf/rl/exact_metrics.py``.
"""
from __future__ import annotations

from .enumeration import (MAX_SEQUENCES, Enumeration, check_size, count_completions, enumerate_completions,
                          enumerate_task, rescore)
from .estimators import (expected_advantage, expected_kl_loss_gradient,
                         expected_kl_reward_gradient, expected_kl_value, expected_pg_gradient,
                         expected_sequence_coefficients, sequence_scale, tilt_derivative)
from .expectations import (best_of_n, best_of_n_kl, best_of_n_kl_bound, entropy, expectation, grad_entropy,
                           grad_expectation, grad_forward_kl, grad_reverse_kl, grad_token_weights, kl_divergences,
                           pass_at_k, per_prompt, sequence_weights)
from .optimum import (Optimum, best_of_n_point, frontier, frontier_reward_at, optimal_policy, optimum,
                      total_variation)
from .voting import answer_distribution, maj_at_k, maj_at_k_from_probs, pass_at_k_curve
from .fixed_points import compare_placements, fixed_point, tabular_gradient
from .weights import estimator_weights, prompt_weight, two_outcome_enumeration
from .values import StateValues, mdp_token_rewards, returns_to_go, state_values
from .window import WindowOptimum, window_objective, window_optimum

__all__ = [
    "MAX_SEQUENCES",
    "Enumeration",
    "count_completions",
    "check_size",
    "enumerate_completions",
    "enumerate_task",
    "rescore",
    "per_prompt",
    "expectation",
    "grad_token_weights",
    "grad_expectation",
    "kl_divergences",
    "entropy",
    "grad_reverse_kl",
    "grad_forward_kl",
    "grad_entropy",
    "sequence_weights",
    "expected_advantage",
    "expected_sequence_coefficients",
    "expected_pg_gradient",
    "tilt_derivative",
    "expected_kl_loss_gradient",
    "expected_kl_reward_gradient",
    "expected_kl_value",
    "sequence_scale",
    "pass_at_k",
    "best_of_n",
    "best_of_n_kl",
    "best_of_n_kl_bound",
    "Optimum",
    "optimal_policy",
    "optimum",
    "frontier",
    "frontier_reward_at",
    "total_variation",
    "best_of_n_point",
    "answer_distribution",
    "maj_at_k",
    "maj_at_k_from_probs",
    "pass_at_k_curve",
    "prompt_weight",
    "estimator_weights",
    "two_outcome_enumeration",
    "fixed_point",
    "tabular_gradient",
    "compare_placements",
    "StateValues",
    "mdp_token_rewards",
    "returns_to_go",
    "state_values",
    "WindowOptimum",
    "window_objective",
    "window_optimum",
]
