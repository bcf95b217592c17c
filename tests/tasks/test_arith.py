"""toyrlhf/tasks/arith.py: arith's corpus entropy, gold and step rewards by hand."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from toyrlhf import tokens as tk
from toyrlhf.tasks import TASKS

from task_helpers import batch


def test_corpus_entropy_equals_brute_force_sum_over_all_arith_completions():
    task = TASKS["arith"]
    comps = np.unique(tk.pad_after_eos(np.array(
        list(itertools.product(range(tk.EOS, task.vocab_size), repeat=task.max_new_tokens)))), axis=0)
    P = task.prompts()
    prompts, comps = np.repeat(P, len(comps), axis=0), np.tile(comps, (len(P), 1))
    p = np.exp(task.corpus_logprob(prompts, comps)) / len(P)
    assert p.sum() == pytest.approx(1.0)
    kept = p > 0
    assert task.corpus_entropy() == pytest.approx(-(p[kept] * np.log(p[kept])).sum(), rel=1e-12)


def test_arith_gold_reward_by_hand():
    task = TASKS["arith"]
    prompts, comps = batch(task, [
        (("1", "2", "3", "="), ("3", "1", "<eos>")),        # s1 = 3, s2 = 6 % 5 = 1: right, well-formed: 1.2
        (("1", "2", "3", "="), ("4", "1", "<eos>")),        # wrong s1 but right final answer: 1.2
        (("1", "2", "3", "="), ("3", "2", "<eos>")),        # well-formed, wrong answer: 0.2
        (("1", "2", "3", "="), ("1", "<eos>")),             # right digit, bad format: 0
        (("4", "4", "4", "="), ("3", "2", "2", "<eos>")),   # 12 % 5 = 2 but three digits: 0
        (("0", "0", "0", "="), ("0", "0", "=", "=")),       # no EOS: 0
    ])
    np.testing.assert_allclose(task.gold_reward(prompts, comps), [1.2, 1.2, 0.2, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(task.is_correct(prompts, comps), [True, True, False, False, False, False])


def test_arith_step_rewards_on_a_hand_made_example():
    task = TASKS["arith"]
    prompts, comps = batch(task, [
        (("1", "2", "3", "="), ("3", "1", "<eos>")),        # both steps right
        (("1", "2", "3", "="), ("4", "2", "<eos>")),        # s1 wrong (4 != 3), s2 right given s1: (4+3)%5 = 2
        (("1", "2", "3", "="), ("3", "<eos>")),             # only step 1 exists
        (("1", "2", "3", "="), ("<eos>",)),                 # no steps at all
        (("1", "2", "3", "="), ("=", "3", "<eos>")),        # step 1 is not a digit: both steps earn 0
    ])
    rewards, step_end = task.step_rewards(prompts, comps)
    assert rewards.shape == step_end.shape == comps.shape
    np.testing.assert_array_equal(step_end, [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(rewards, [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert TASKS["pref"].step_rewards(prompts[:, :3], comps) is None
