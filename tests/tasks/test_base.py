"""toyrlhf.tasks (tasks/base.py and the registry): every task's interface conventions, corpus generator, gold-reward
structure and demonstrations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from toyrlhf import tokens as tk
from toyrlhf.tasks import DEFAULT_TASK, TASKS, get_task

from task_helpers import CONTEXT, NAMES, all_contexts, batch


@pytest.mark.parametrize("name", NAMES)
def test_vocab_prompts_and_sizes_follow_the_token_conventions(name):
    task = TASKS[name]
    assert task.name == name and task.description
    assert task.vocab[:3] == tk.SPECIAL and task.vocab_size == len(task.vocab) == len(set(task.vocab))
    P = task.prompts()
    assert P.dtype == np.int64 and P.shape[1] == task.prompt_len
    assert (P[:, 0] == tk.BOS).all() and (P[:, 1:] > tk.EOS).all()
    assert len(np.unique(P, axis=0)) == len(P)
    # the exact engine enumerates (V-2)^T completions per prompt
    assert (task.vocab_size - 2) ** task.max_new_tokens <= 20_000 and task.max_new_tokens <= 5
    assert set(task.reward_components(P[:1], np.full((1, task.max_new_tokens), tk.EOS))) == set(task.reward_weights)
    drawn = task.sample_prompts(50, np.random.default_rng(0))
    assert drawn.shape == (50, task.prompt_len)
    assert (drawn[:, None, :] == P[None, :, :]).all(axis=2).any(axis=1).all()


def test_get_task_returns_registered_tasks_and_default_exists():
    assert DEFAULT_TASK == "pref" and get_task(DEFAULT_TASK) is TASKS["pref"]
    assert {"pref", "arith", "length"} <= set(TASKS)


def test_get_task_unknown_name_raises_value_error_naming_the_choices():
    with pytest.raises(ValueError) as err:
        get_task("nope")
    msg = str(err.value)
    assert "'nope'" in msg and all(name in msg for name in TASKS)


def test_is_correct_raises_for_the_unverifiable_pref_task():
    task = TASKS["pref"]
    assert not task.verifiable and TASKS["arith"].verifiable and TASKS["length"].verifiable
    with pytest.raises(NotImplementedError):
        task.is_correct(*batch(task, [(("cat", "dog"), ("cat", "<eos>"))]))


@pytest.mark.parametrize("name", NAMES)
def test_corpus_probs_rows_are_distributions_for_every_prompt_and_random_prefixes(name):
    task = TASKS[name]
    rng = np.random.default_rng(1)
    P = task.prompts()
    for t in range(task.max_new_tokens):
        # any output tokens, EOS included: rows must be valid even for prefixes the corpus never produces
        prefix = rng.integers(tk.EOS, task.vocab_size, size=(len(P), t))
        probs = task.corpus_probs(P, prefix)
        assert probs.shape == (len(P), task.vocab_size - 2) and probs.dtype == np.float64
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_probs_depend_only_on_the_last_4_tokens_of_prompt_and_prefix(name):
    # exhaustive: every prompt x every EOS-free prefix of every length, pooled; contexts whose BOS-padded
    # last-4 windows agree (the model's view) must get identical distributions, whatever their lengths
    task = TASKS[name]
    windows, probs = [], []
    for t in range(task.max_new_tokens):
        prompts, prefixes = all_contexts(task, t)
        probs.append(task.corpus_probs(prompts, prefixes))
        ctx = np.concatenate([np.full((len(prompts), CONTEXT), tk.BOS), prompts, prefixes], axis=1)
        windows.append(ctx[:, -CONTEXT:])
    windows, probs = np.concatenate(windows), np.concatenate(probs)
    _, first, group = np.unique(windows, axis=0, return_index=True, return_inverse=True)
    assert len(first) < len(windows) / 2  # many pairs of contexts share a window
    np.testing.assert_array_equal(probs, probs[first[group.ravel()]])


@pytest.mark.parametrize("name", NAMES)
def test_sample_corpus_first_token_frequencies_match_corpus_probs_chisquare_p_above_1e_3(name):
    task = TASKS[name]
    prompts, comps = task.sample_corpus(60_000, np.random.default_rng(2))
    assert comps.shape == (60_000, task.max_new_tokens) and comps.dtype == np.int64
    assert (comps == tk.pad_after_eos(comps)).all()  # PAD after the first EOS
    p0 = task.prompts()[0]
    first = comps[(prompts == p0).all(axis=1), 0]
    expected = task.corpus_probs(p0[None], np.zeros((1, 0), np.int64))[0]
    counts = np.bincount(first - tk.OUT_OFFSET, minlength=len(expected))
    support = expected > 0
    assert counts[~support].sum() == 0  # zero-probability tokens are never drawn
    result = stats.chisquare(counts[support], expected[support] * counts.sum())
    assert result.pvalue > 1e-3  # fixed seed; the threshold only catches a wrong sampler


@pytest.mark.parametrize("name", NAMES)
def test_corpus_entropy_matches_monte_carlo_minus_mean_log_p_within_4_standard_errors(name):
    task = TASKS[name]
    n = 20_000
    prompts, comps = task.sample_corpus(n, np.random.default_rng(3))
    logp = -np.log(len(task.prompts())) + task.corpus_logprob(prompts, comps)
    estimate, se = -logp.mean(), logp.std(ddof=1) / np.sqrt(n)
    assert abs(estimate - task.corpus_entropy()) <= 4 * se
    # per token: total / (P-1 prompt tokens + expected completion tokens incl. EOS)
    lengths = tk.completion_lengths(comps)
    assert abs(lengths.mean() - task.corpus_expected_length()) <= 4 * lengths.std() / np.sqrt(n)
    per_token = task.corpus_entropy() / (task.prompt_len - 1 + task.corpus_expected_length())
    assert task.corpus_entropy_per_token() == pytest.approx(per_token)


@pytest.mark.parametrize("name", NAMES)
def test_gold_reward_is_the_weighted_sum_of_components_and_ignores_tokens_after_eos(name):
    task = TASKS[name]
    rng = np.random.default_rng(4)
    prompts = task.sample_prompts(500, rng)
    raw = rng.integers(tk.EOS, task.vocab_size, size=(500, task.max_new_tokens))
    comps = tk.pad_after_eos(raw)
    parts = task.reward_components(prompts, comps)
    assert all(v.shape == (500,) and v.dtype == np.float64 for v in parts.values())
    weighted = sum(w * parts[k] for k, w in task.reward_weights.items())
    gold = task.gold_reward(prompts, comps)
    assert gold.shape == (500,) and gold.dtype == np.float64
    np.testing.assert_allclose(gold, weighted, atol=1e-12)
    np.testing.assert_array_equal(task.gold_reward(prompts, raw), gold)


@pytest.mark.parametrize("name", ["arith", "length"])
def test_verifiable_demonstrations_are_all_correct(name):
    task = TASKS[name]
    prompts, comps = task.demonstrations(2_000, np.random.default_rng(5))
    assert prompts.shape == (2_000, task.prompt_len) and comps.shape == (2_000, task.max_new_tokens)
    assert (comps == tk.pad_after_eos(comps)).all() and not tk.is_truncated(comps).any()
    assert task.is_correct(prompts, comps).all()


def test_describe_renders_prompt_and_completion_as_text():
    task = TASKS["arith"]
    p, c = batch(task, [(("1", "2", "3", "="), ("3", "1", "<eos>"))])
    assert task.describe(p[0], c[0]) == "1 2 3 = -> 3 1 <eos>"
