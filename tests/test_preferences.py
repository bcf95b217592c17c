"""Preference data: Plackett-Luce / Bradley-Terry labels, the Bayes ceiling, ties, and the split by prompt."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import expit

from toyrlhf import preferences as P
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.tasks import get_task

Z_MAX = 4.5   # a sampled frequency may sit at most 4.5 binomial standard errors from its probability


def random_policy(task, seed=0):
    """Any TinyLM is a policy: preference data only needs samples and the gold reward."""
    return TinyLM(ModelConfig(vocab_size=task.vocab_size, embed=4, hidden=8), seed=seed)


# ------------------------------------------------------------------------------------------ Plackett-Luce
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_plackett_luce_pairwise_marginals_equal_bradley_terry_by_enumeration(seed, tau):
    r = np.random.default_rng(seed).normal(0.0, 2.0, size=3)
    perms = list(itertools.permutations(range(3)))
    probs = np.array([P.plackett_luce_prob(r / tau, p) for p in perms])
    assert probs.sum() == pytest.approx(1.0, abs=1e-14)
    for a, b in itertools.permutations(range(3), 2):
        above = sum(pr for pr, p in zip(probs, perms) if p.index(a) < p.index(b))
        assert above == pytest.approx(expit((r[a] - r[b]) / tau), abs=1e-14)


@pytest.mark.parametrize("k, tau", [(2, 1.0), (3, 1.0), (3, 0.5), (4, 2.0)])
def test_sampled_rankings_agree_with_sigma_delta_over_tau(k, tau):
    rng = np.random.default_rng(k)
    gold = np.array([0.0, 0.7, -0.4, 0.7][:k])       # includes an equal-reward pair for k = 4: a fair coin
    n = 100_000
    order = P.plackett_luce_rank(np.tile(gold, (n, 1)), tau, rng)
    pos = np.argsort(order, axis=1)                    # pos[:, a] = rank position of completion a
    for a, b in itertools.combinations(range(k), 2):
        p = expit((gold[a] - gold[b]) / tau)
        freq = np.mean(pos[:, a] < pos[:, b])
        assert abs(freq - p) <= Z_MAX * np.sqrt(p * (1 - p) / n), (a, b, freq, p)


def test_noiseless_labels_follow_the_gold_order_and_toss_a_coin_on_gold_ties():
    rng = np.random.default_rng(0)
    n = 20_000
    order = P.plackett_luce_rank(np.tile([1.0, 1.0, 0.0], (n, 1)), 0.0, rng)
    assert np.all(order[:, 2] == 2)                    # the worst is always last
    freq = np.mean(order[:, 0] == 0)
    assert abs(freq - 0.5) <= Z_MAX * np.sqrt(0.25 / n)


# ------------------------------------------------------------------------------------------ the ceiling
def test_bayes_accuracy_at_hand_computed_values():
    ln3 = np.log(3.0)                                  # sigma(ln 3) = 3/4
    assert P.bayes_accuracy([0.0], 1.0) == 0.5
    assert P.bayes_accuracy([ln3], 1.0) == pytest.approx(0.75)
    assert P.bayes_accuracy([-ln3], 1.0) == pytest.approx(0.75)          # the sign of Delta does not matter
    assert P.bayes_accuracy([ln3, -ln3, 0.0], 1.0) == pytest.approx((0.75 + 0.75 + 0.5) / 3)
    assert P.bayes_accuracy([2 * ln3], 2.0) == pytest.approx(0.75)        # Delta / tau is what counts
    assert P.bayes_accuracy([0.3, -2.0, 0.0], 0.0) == pytest.approx((1 + 1 + 0.5) / 3)   # noiseless labels
    assert P.bayes_accuracy([1e6], 1.0) == 1.0


def test_bayes_nll_is_the_label_entropy():
    ln3 = np.log(3.0)
    assert P.bayes_nll([0.0], 1.0) == pytest.approx(np.log(2.0))
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert P.bayes_nll([ln3, -ln3], 1.0) == pytest.approx(h)
    assert P.bayes_nll([1e6, 5.0], 0.0) == 0.0


def test_expected_accuracy_of_gold_reversed_and_constant_scorers():
    d = np.array([0.3, -1.2, 2.0, 0.0, -0.1])
    for tau in (0.5, 1.0):
        best = P.bayes_accuracy(d, tau)
        assert P.expected_accuracy(d, d, tau) == pytest.approx(best)
        assert P.expected_accuracy(5 * d, d, tau) == pytest.approx(best)     # only the order matters
        assert P.expected_accuracy(-d, d, tau) == pytest.approx(1 - best)
        assert P.expected_accuracy(np.zeros_like(d), d, tau) == 0.5


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=1, max_size=30), st.floats(0.1, 4.0))
def test_no_fixed_scorer_beats_the_ceiling(pairs, tau):
    s, d = np.array(pairs).T
    assert P.expected_accuracy(s, d, tau) <= P.bayes_accuracy(d, tau) + 1e-12


def test_realised_accuracy_of_the_gold_scorer_matches_the_ceiling_in_expectation():
    rng = np.random.default_rng(3)
    d = rng.normal(0.0, 1.0, 50_000)
    wins = rng.random(d.size) < expit(d)               # label: a beats b
    diff = np.where(wins, d, -d)                       # gold score of winner minus loser
    p = expit(np.abs(d))
    assert abs(P.accuracy(diff) - P.bayes_accuracy(d, 1.0)) <= Z_MAX * np.sqrt(np.sum(p * (1 - p))) / d.size


def test_gold_order_accuracy_ignores_gold_ties():
    acc, n = P.gold_order_accuracy([1.0, -1.0, 2.0, 0.0], [0.5, 0.5, 0.0, 1.0])
    assert n == 3 and acc == pytest.approx((1 + 0 + 0.5) / 3)


# ------------------------------------------------------------------------------------------ data
def test_heldout_split_is_by_prompt():
    task = get_task("pref")
    for seed in range(3):
        train, ho = P.make_split(random_policy(task), task, 300, heldout_frac=0.2, rng=np.random.default_rng(seed))
        assert not set(train.prompt_ids) & set(ho.prompt_ids)
        assert len(set(ho.prompt_ids)) <= round(0.2 * len(task.prompts()))
        assert train.n + ho.n == 300 and ho.n == 60
        for part in (train, ho):
            np.testing.assert_array_equal(part.prompts, task.prompts()[part.prompt_ids])


def test_split_sizes_are_validated():
    with pytest.raises(ValueError):
        P.split_prompts(36, 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        P.split_prompts(36, 1.0, np.random.default_rng(0))
    tr, ho = P.split_prompts(36, 0.01, np.random.default_rng(0))
    assert len(ho) == 1 and len(tr) == 35


@pytest.mark.parametrize("k", [2, 3])
def test_groups_are_ranked_best_first_with_gold_rewards_of_their_completions(k):
    task = get_task("pref")
    data = P.make_preferences(random_policy(task), task, np.arange(36).repeat(10), k=k, tau=1.0,
                              rng=np.random.default_rng(k))
    assert data.completions.shape == (data.n, k, task.max_new_tokens) and data.n_pairs == data.n * k * (k - 1) // 2
    prompts, comps = data.flat_completions()
    np.testing.assert_allclose(data.gold.ravel(), task.gold_reward(prompts, comps))
    tokens, mask = data.joined()
    assert tokens.shape == (data.n * k, task.prompt_len + task.max_new_tokens)
    # winners are better than losers more often than not (the labels carry the gold signal)
    assert np.mean(np.sign(data.delta_gold())) > 0


def test_identical_completions_are_dropped_and_counted():
    task = get_task("pref")
    policy = random_policy(task, seed=1)
    rng = np.random.default_rng(0)
    # a cold policy repeats itself: many groups contain identical completions and must be re-drawn
    data = P.make_preferences(policy, task, np.zeros(200, dtype=np.int64), k=3, tau=1.0, rng=rng, temperature=0.3)
    assert data.n_ties_dropped > 0
    i, j = P.pair_index(3)
    assert not (data.completions[:, i] == data.completions[:, j]).all(axis=2).any()
    assert data.n + data.n_skipped == 200
    # a deterministic policy never yields two distinct completions: every prompt is skipped, explicitly
    frozen = P.make_preferences(policy, task, np.zeros(5, dtype=np.int64), k=2, tau=1.0, rng=rng,
                                temperature=1e-6, max_rounds=3)
    assert frozen.n == 0 and frozen.n_skipped == 5 and frozen.n_ties_dropped == 15


def test_same_seed_gives_the_same_preferences():
    task = get_task("pref")
    a = P.make_split(random_policy(task), task, 100, rng=np.random.default_rng(7))
    b = P.make_split(random_policy(task), task, 100, rng=np.random.default_rng(7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.completions, y.completions)
        np.testing.assert_array_equal(x.prompt_ids, y.prompt_ids)


# ------------------------------------------------------------------------------------------ exact population figures
def random_population(rng, n_prompts=3, max_size=8, n_gold=4, n_scores=4):
    """Prompts with a few completions each: pi, gold and scores on small grids (so both have ties)."""
    sizes = rng.integers(2, max_size + 1, n_prompts)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    probs = np.concatenate([rng.dirichlet(np.ones(m)) for m in sizes])
    gold = rng.integers(0, n_gold, offsets[-1]) * 0.5
    scores = rng.integers(0, n_scores, offsets[-1]).astype(np.float64)
    return probs, gold, scores, offsets


def brute_force_pair_expectations(probs, gold, scores, offsets, tau):
    bayes, acc = [], []
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        p, r, s = probs[lo:hi], gold[lo:hi], scores[lo:hi]
        z = 1.0 - np.sum(p * p)
        b = a = 0.0
        for i, j in itertools.permutations(range(hi - lo), 2):
            w = p[i] * p[j] / z
            b += w * P.pref_prob(abs(r[i] - r[j]), tau)
            a += w * (P.pref_prob(r[i] - r[j], tau) if s[i] > s[j] else
                      P.pref_prob(r[j] - r[i], tau) if s[i] < s[j] else 0.5)
        bayes.append(b)
        acc.append(a)
    return np.mean(bayes), np.mean(acc)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tau", [0.0, 0.7, 1.0])
def test_exact_pair_expectations_equal_the_double_sum_over_distinct_pairs(seed, tau):
    probs, gold, scores, offsets = random_population(np.random.default_rng(seed))
    out = P.exact_pair_expectations(probs, gold, scores, offsets, tau)
    bayes, acc = brute_force_pair_expectations(probs, gold, scores, offsets, tau)
    assert out["bayes_accuracy"] == pytest.approx(bayes, abs=1e-13)
    assert out["expected_accuracy"] == pytest.approx(acc, abs=1e-13)


def test_exact_expected_accuracy_of_gold_and_constant_scorers():
    probs, gold, _, offsets = random_population(np.random.default_rng(7), n_prompts=4)
    out = P.exact_pair_expectations(probs, gold, gold, offsets, 1.0)       # the gold reward as the scorer
    assert out["expected_accuracy"] == pytest.approx(out["bayes_accuracy"], abs=1e-14)
    out = P.exact_pair_expectations(probs, gold, np.zeros_like(gold), offsets, 1.0)
    assert out["expected_accuracy"] == pytest.approx(0.5, abs=1e-14)
    out = P.exact_pair_expectations(probs, gold, -gold, offsets, 1.0)      # reversed: every ordered pair wrong
    assert out["expected_accuracy"] == pytest.approx(1.0 - out["bayes_accuracy"], abs=1e-14)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_sampled_ceiling_and_expected_accuracy_are_unbiased_for_the_exact_population_values(tau):
    """Draw pairs as make_preferences does (prompt uniform, two i.i.d. completions, redrawn while identical);
    the sample means of sigma(|Delta*|/tau) and of the scorer's per-pair agreement estimate the exact values
    without bias: both sit within Z_MAX standard errors of them."""
    rng = np.random.default_rng(11)
    probs, gold, scores, offsets = random_population(rng, n_prompts=4, max_size=6)
    exact = P.exact_pair_expectations(probs, gold, scores, offsets, tau)
    n = 40_000
    q = rng.integers(0, len(offsets) - 1, n)
    a = np.empty(n, np.int64)
    b = np.empty(n, np.int64)
    todo = np.arange(n)
    while todo.size:                                    # rejection of identical pairs, as for the real data
        for out in (a, b):
            for qi in np.unique(q[todo]):
                rows = todo[q[todo] == qi]
                lo, hi = offsets[qi], offsets[qi + 1]
                out[rows] = lo + rng.choice(hi - lo, size=rows.size, p=probs[lo:hi] / probs[lo:hi].sum())
        todo = todo[a[todo] == b[todo]]
    dgold, dscore = gold[a] - gold[b], scores[a] - scores[b]
    for name, per_pair in (
            ("bayes_accuracy", P.pref_prob(np.abs(dgold), tau)),
            ("expected_accuracy", P.agreement_prob(dscore, dgold, tau))):
        z = (per_pair.mean() - exact[name]) / (per_pair.std(ddof=1) / np.sqrt(n))
        assert abs(z) <= Z_MAX, (name, z)
    assert P.bayes_accuracy(dgold, tau) == pytest.approx(P.pref_prob(np.abs(dgold), tau).mean())
    assert P.expected_accuracy(dscore, dgold, tau) == pytest.approx(P.agreement_prob(dscore, dgold, tau).mean())


def test_make_split_records_the_prompt_population_of_each_side():
    task = get_task("pref")
    train, heldout = P.make_split(random_policy(task), task, 200, rng=np.random.default_rng(0))
    assert np.intersect1d(train.population_ids, heldout.population_ids).size == 0
    assert np.union1d(train.population_ids, heldout.population_ids).size == len(task.prompts())
    assert np.isin(train.prompt_ids, train.population_ids).all()
    assert np.isin(heldout.prompt_ids, heldout.population_ids).all()


# ------------------------------------------------------------------------------------------ correlations
def test_pearson_spearman_and_ranks_equal_scipy_with_and_without_ties():
    from scipy import stats
    rng = np.random.default_rng(0)
    for n in (2, 3, 17, 500):
        for ties in (False, True):
            a = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
            b = a + rng.normal(size=n)
            if np.all(a == a[0]):
                continue
            np.testing.assert_array_equal(P.average_ranks(a), stats.rankdata(a))
            assert P.pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-13)
            assert P.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-13)
    assert np.isnan(P.pearson(np.ones(5), np.arange(5.0))) and np.isnan(P.spearman(np.arange(5.0), np.ones(5)))


def test_within_prompt_correlation_ignores_per_prompt_shifts_that_change_the_pooled_one():
    """BT identifies r only up to a shift c(x) per prompt: the within-prompt figure is invariant to it."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 50)
    gold = rng.normal(size=groups.size)
    score = gold + 0.5 * rng.normal(size=groups.size)
    shifted = score + 10.0 * rng.normal(size=6)[groups]
    within = P.within_groups(P.spearman, score, gold, groups)
    assert P.within_groups(P.spearman, shifted, gold, groups) == pytest.approx(within, abs=1e-12)
    assert P.spearman(shifted, gold) < within - 0.3
