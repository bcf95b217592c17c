"""The exact engine's enumeration (toyrlhf/exact/enumeration.py): every completion exactly once in the padded
layout, exact log-probabilities, rescoring under another model, the size limit."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf import tokens as tk
from toyrlhf.errors import UserError
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.tasks import get_task
from exact_helpers import PROMPTS, T, tiny_model


@pytest.mark.parametrize("arch,temperature", [("mlp", 1.0), ("mlp", 0.6), ("bigram", 1.7)])
def test_probabilities_sum_to_one_per_prompt(arch, temperature):
    m = tiny_model(0, arch=arch)
    e = exact.enumerate_completions(m, PROMPTS, T, temperature)
    assert e.n == len(PROMPTS) * exact.count_completions(3, T) == 30
    assert np.max(np.abs(exact.per_prompt(e, e.probs) - 1.0)) < 1e-12


def test_enumeration_lists_every_completion_exactly_once_in_the_padded_layout():
    m = tiny_model(1)
    e = exact.enumerate_completions(m, PROMPTS, T)
    # brute force: every word sequence of length < T followed by EOS, and every length-T sequence
    words, expected = (3, 4), set()
    for q in range(len(PROMPTS)):
        for L in range(T + 1):
            for body in itertools.product(words, repeat=L):
                comp = list(body) + ([tk.EOS] if L < T else [])
                if len(comp) > T:
                    continue
                expected.add((q, tuple(comp + [tk.PAD] * (T - len(comp)))))
    got = {(int(q), tuple(c)) for q, c in zip(e.prompt_index, e.completions)}
    assert got == expected and len(got) == e.n
    assert np.all(np.diff(e.prompt_index) >= 0)                          # sorted by prompt, offsets consistent
    assert np.array_equal(e.offsets, np.searchsorted(e.prompt_index, np.arange(len(PROMPTS) + 1)))
    assert np.array_equal(e.row_prompts, PROMPTS[e.prompt_index])
    ref_tokens, ref_mask = tk.join(e.row_prompts, e.completions)
    assert np.array_equal(e.tokens, ref_tokens) and np.array_equal(e.mask, ref_mask)
    assert np.array_equal(e.lengths, tk.completion_lengths(e.completions))


@pytest.mark.parametrize("arch,temperature", [("mlp", 1.0), ("mlp", 0.7), ("bigram", 1.3)])
def test_enumerated_logp_equals_model_logp_forward(arch, temperature):
    m = tiny_model(2, arch=arch, k=3)
    e = exact.enumerate_completions(m, PROMPTS, T, temperature)
    logp, _, _ = m.logp_forward(e.tokens, e.mask, temperature)
    assert np.max(np.abs(logp - e.logp)) < 1e-12
    assert np.max(np.abs(logp.sum(axis=1) - e.seq_logp)) < 1e-12
    assert np.all(e.logp[~e.mask] == 0.0)


def test_rescore_gives_the_other_models_log_probs_even_with_another_window():
    m = tiny_model(3, k=2)
    e = exact.enumerate_completions(m, PROMPTS, T)
    for other in (tiny_model(4, k=2), tiny_model(5, k=3), tiny_model(6, arch="bigram")):
        r = exact.rescore(other, e)
        logp, _, _ = other.logp_forward(e.tokens, e.mask)
        assert np.max(np.abs(r.logp - logp)) < 1e-12
        assert np.max(np.abs(exact.per_prompt(r, r.probs) - 1.0)) < 1e-12


def test_enumerating_about_1e5_completions_works():
    """V_out = 7, T = 5: 9,331 completions a prompt; 11 prompts -> 102,641 rows (timing-free)."""
    m = TinyLM(ModelConfig(vocab_size=9, context=4, embed=4, hidden=16), seed=0)
    prompts = np.stack([np.full(11, tk.BOS), np.arange(11) % 6 + 3, np.arange(11) // 6 + 3], axis=1)
    e = exact.enumerate_completions(m, prompts, 5)
    assert e.n == 102_641 == 11 * exact.count_completions(7, 5)
    assert np.max(np.abs(exact.per_prompt(e, e.probs) - 1.0)) < 1e-12
    rows = np.random.default_rng(0).choice(e.n, 2000, replace=False)
    logp, _, _ = m.logp_forward(e.tokens[rows], e.mask[rows])
    assert np.max(np.abs(logp - e.logp[rows])) < 1e-12
    g = exact.grad_expectation(m, e, e.lengths.astype(float))
    assert g.shape == m.flat.shape and np.all(np.isfinite(g)) and np.linalg.norm(g) > 0


def test_too_many_completions_is_a_one_line_user_error():
    m = tiny_model(0)
    with pytest.raises(UserError) as err:
        exact.enumerate_completions(m, PROMPTS, T, limit=29)
    assert "30 completions" in str(err.value) and "\n" not in str(err.value)


def test_rescoring_with_a_prefix_window_model_scores_the_full_sequences_not_the_shared_windows():
    """A model whose window holds the whole prefix (the reward model's alignment) must not reuse the enumeration's
    last-k windows even at the same width: rescore falls back to logp_forward on every sequence."""
    task = get_task("length")
    policy = TinyLM(ModelConfig(vocab_size=task.vocab_size, context=task.prompt_len + task.max_new_tokens,
                                embed=4, hidden=8), seed=0)
    enum = exact.enumerate_task(policy, task)
    other = TinyLM(ModelConfig(vocab_size=task.vocab_size, context=policy.config.context, embed=4, hidden=8,
                               align="prefix"), seed=1)
    out = exact.rescore(other, enum)
    lp, _, _ = other.logp_forward(enum.tokens, enum.mask)
    np.testing.assert_array_equal(out.seq_logp, lp.sum(axis=1))
    with pytest.raises(ValueError, match="align"):
        exact.enumerate_task(other, task)
