"""toyrlhf/tasks/length.py: the length task's corpus entropy, gold reward and demonstrations."""
from __future__ import annotations

import numpy as np
import pytest

from toyrlhf import tokens as tk
from toyrlhf.tasks import TASKS

from task_helpers import batch


def test_length_corpus_entropy_equals_closed_form():
    # log 16 (prompt) + H(first token: 0.4 right, 0.2 x 3 wrong) + P(alive at t) * H(EOS .35, um .325, so .325)
    # for t = 1..4, where alive at t means no EOS among tokens 1..t-1: 1, .65, .65^2, .65^3
    task = TASKS["length"]
    h_first = -(0.4 * np.log(0.4) + 3 * 0.2 * np.log(0.2))
    h_step = -(0.35 * np.log(0.35) + 2 * 0.325 * np.log(0.325))
    alive = 1 + 0.65 + 0.65 ** 2 + 0.65 ** 3
    assert task.corpus_entropy() == pytest.approx(np.log(16) + h_first + alive * h_step, rel=1e-12)
    assert task.corpus_expected_length() == pytest.approx(1 + alive)
    assert task.corpus_entropy_per_token() == pytest.approx(task.corpus_entropy() / (2 + 1 + alive))


def test_length_gold_reward_by_hand_is_independent_of_length():
    task = TASKS["length"]
    prompts, comps = batch(task, [
        (("B", "C"), ("D", "<eos>")),                       # 1 + 2 = 3 -> D: 1
        (("B", "C"), ("D", "um", "so", "um", "<eos>")),     # same answer, longer: still 1
        (("D", "D"), ("C", "so", "<eos>")),                 # 3 + 3 = 6 % 4 = 2 -> C: 1
        (("D", "D"), ("A", "<eos>")),                       # wrong: 0
        (("A", "A"), ("A", "um", "um", "um", "um")),        # right but never ended: 0
        (("A", "A"), ("<eos>",)),                           # no answer: 0
    ])
    np.testing.assert_allclose(task.gold_reward(prompts, comps), [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(task.is_correct(prompts, comps), [True, True, True, False, False, False])


def test_length_demonstrations_vary_in_length_from_answer_only_to_three_fillers():
    task = TASKS["length"]
    _, comps = task.demonstrations(2_000, np.random.default_rng(6))
    assert set(np.unique(tk.completion_lengths(comps))) == {2, 3, 4, 5}
