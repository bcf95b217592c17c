"""toyrlhf/tasks/pref.py: the preference task's corpus, gold reward and demonstrations."""
from __future__ import annotations

import numpy as np

from toyrlhf import tokens as tk
from toyrlhf.tasks import TASKS

from task_helpers import all_contexts, batch


def test_pref_corpus_ignores_the_topics_and_never_starts_with_eos():
    task = TASKS["pref"]
    for t in range(task.max_new_tokens):
        prompts, prefixes = all_contexts(task, t)
        probs = task.corpus_probs(prompts, prefixes).reshape(len(task.prompts()), -1, task.vocab_size - 2)
        np.testing.assert_array_equal(probs, probs[:1].repeat(len(probs), axis=0))
        if t == 0:
            assert (probs[..., tk.EOS - tk.OUT_OFFSET] == 0).all()


def test_pref_gold_reward_by_hand():
    task = TASKS["pref"]
    assert task.reward_weights == {"on_topic": 0.6, "variety": 0.3, "length": -0.4, "repetition": -0.3,
                                   "truncated": -0.5}
    prompts, comps = batch(task, [
        (("cat", "dog"), ("cat", "dog", "fox", "<eos>")),        # 2 on topic, 3 distinct:       1.2 + 0.9 = 2.1
        (("cat", "cat"), ("cat", "fox", "cat", "<eos>")),        # 2 on topic, 2 distinct:       1.2 + 0.6 = 1.8
        (("cat", "dog"), ("owl", "owl", "owl", "owl", "owl")),   # 0, 1 distinct, |5-3|, 4 repeats, truncated:
                                                                 #   0.3 - 0.8 - 1.2 - 0.5 = -2.2
        (("owl", "bee"), ("bee", "<eos>")),                      # 1, 1, |1-3|=2:            0.6 + 0.3 - 0.8 = 0.1
        (("owl", "bee"), ("ant", "ant", "bee", "owl", "<eos>")), # 2 (capped), 3, |4-3|, 1 repeat:
                                                                 #   1.2 + 0.9 - 0.4 - 0.3 = 1.4
        (("fox", "ant"), ("<eos>",)),                            # no words, length 3:               -1.2
    ])
    comps_by_hand = task.reward_components(prompts, comps)
    np.testing.assert_array_equal(comps_by_hand["on_topic"], [2, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(comps_by_hand["repetition"], [0, 0, 4, 0, 1, 0])
    np.testing.assert_allclose(task.gold_reward(prompts, comps), [2.1, 1.8, -2.2, 0.1, 1.4, -1.2], atol=1e-12)


def test_pref_demonstrations_have_higher_mean_gold_reward_than_corpus_samples():
    task = TASKS["pref"]
    rng = np.random.default_rng(7)
    demo = task.gold_reward(*task.demonstrations(4_000, rng))
    corpus = task.gold_reward(*task.sample_corpus(4_000, rng))
    # best-of-4 drafts: better than the corpus, but not the best possible (2.1)
    assert demo.mean() > corpus.mean() + 0.5 and demo.mean() < 1.5
