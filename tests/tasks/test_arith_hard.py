"""The arith_hard task (issue 16, item 4): arith with a misconception demonstrated on the b = 4 prompts."""
from __future__ import annotations

import numpy as np

from toyrlhf.tasks import TASKS, ArithTask, get_task


def test_arith_hard_is_arith_except_the_hard_demonstrations():
    hard, base = get_task("arith_hard"), get_task("arith")
    assert "arith_hard" in TASKS and isinstance(hard, ArithTask)
    assert np.array_equal(hard.prompts(), base.prompts())
    assert hard.hard(hard.prompts()).sum() == 25
    prompts, comps = hard.demonstrations(4000, np.random.default_rng(0))
    right = hard.is_correct(prompts, comps)
    h = hard.hard(prompts)
    assert right[~h].all()
    assert abs(right[h].mean() - hard.demo_right) < 0.02
    assert (hard.reward_components(prompts, comps)["format"] == 1).all()
    # rewards and the corpus are arith's
    rng = np.random.default_rng(1)
    c = rng.integers(2, 10, size=(50, 4))
    p = base.prompts()[rng.integers(125, size=50)]
    for k, v in base.reward_components(p, c).items():
        assert np.array_equal(hard.reward_components(p, c)[k], v)
    assert np.allclose(hard.corpus_probs(p, c[:, :0]), base.corpus_probs(p, c[:, :0]))
    # step 2 on a hard prompt: the misconception (d + c + 1) % 5 is the likeliest digit
    hp = hard.prompts()[hard.hard(hard.prompts())]
    pre = np.full((len(hp), 1), hard.digit0 + 1)
    probs = hard.corpus_probs(hp, pre)
    assert np.allclose(probs.sum(axis=1), 1.0)
    want = (1 + hp[:, 3] - hard.digit0 + 1) % 5 + hard.digit0 - 2
    assert (probs.argmax(axis=1) == want).all()
