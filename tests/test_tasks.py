"""Tests of toyrlhf.tasks: interface conventions, corpus generator, gold rewards, demonstrations."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from toyrlhf import tokens as tk
from toyrlhf.tasks import DEFAULT_TASK, TASKS, get_task

NAMES = sorted(TASKS)
CONTEXT = 4  # the corpus generators promise to look at no more than the last 4 tokens


def seq(task, *words):
    """Token ids of a completion written as words, PAD-filled to max_new_tokens."""
    ids = [task.vocab.index(w) for w in words]
    return np.array(ids + [tk.PAD] * (task.max_new_tokens - len(ids)), dtype=np.int64)


def prompt(task, *words):
    return np.array([tk.BOS] + [task.vocab.index(w) for w in words], dtype=np.int64)


def batch(task, rows):
    """[(prompt words, completion words), ...] -> (prompts (B, P), completions (B, T))."""
    return (np.stack([prompt(task, *p) for p, _ in rows]), np.stack([seq(task, *c) for _, c in rows]))


def all_contexts(task, t):
    """Every (prompt, prefix of length t without EOS): (prompts (N, P), prefixes (N, t))."""
    P = task.prompts()
    words = np.arange(tk.EOS + 1, task.vocab_size)
    combos = list(itertools.product(words, repeat=t))
    prefixes = np.array(combos, dtype=np.int64).reshape(len(combos), t)
    return np.repeat(P, len(prefixes), axis=0), np.tile(prefixes, (len(P), 1))


# ---------------------------------------------------------------------------- interface conventions
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


# ---------------------------------------------------------------------------- corpus generator
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


def test_pref_corpus_ignores_the_topics_and_never_starts_with_eos():
    task = TASKS["pref"]
    for t in range(task.max_new_tokens):
        prompts, prefixes = all_contexts(task, t)
        probs = task.corpus_probs(prompts, prefixes).reshape(len(task.prompts()), -1, task.vocab_size - 2)
        np.testing.assert_array_equal(probs, probs[:1].repeat(len(probs), axis=0))
        if t == 0:
            assert (probs[..., tk.EOS - tk.OUT_OFFSET] == 0).all()


# ---------------------------------------------------------------------------- rewards
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


# ---------------------------------------------------------------------------- demonstrations
@pytest.mark.parametrize("name", ["arith", "length"])
def test_verifiable_demonstrations_are_all_correct(name):
    task = TASKS[name]
    prompts, comps = task.demonstrations(2_000, np.random.default_rng(5))
    assert prompts.shape == (2_000, task.prompt_len) and comps.shape == (2_000, task.max_new_tokens)
    assert (comps == tk.pad_after_eos(comps)).all() and not tk.is_truncated(comps).any()
    assert task.is_correct(prompts, comps).all()


def test_length_demonstrations_vary_in_length_from_answer_only_to_three_fillers():
    task = TASKS["length"]
    _, comps = task.demonstrations(2_000, np.random.default_rng(6))
    assert set(np.unique(tk.completion_lengths(comps))) == {2, 3, 4, 5}


def test_pref_demonstrations_have_higher_mean_gold_reward_than_corpus_samples():
    task = TASKS["pref"]
    rng = np.random.default_rng(7)
    demo = task.gold_reward(*task.demonstrations(4_000, rng))
    corpus = task.gold_reward(*task.sample_corpus(4_000, rng))
    # best-of-4 drafts: better than the corpus, but not the best possible (2.1)
    assert demo.mean() > corpus.mean() + 0.5 and demo.mean() < 1.5


def test_describe_renders_prompt_and_completion_as_text():
    task = TASKS["arith"]
    p, c = batch(task, [(("1", "2", "3", "="), ("3", "1", "<eos>"))])
    assert task.describe(p[0], c[0]) == "1 2 3 = -> 3 1 <eos>"
