"""Exact maj@k and pass@k (toyrlhf/exact/voting.py) against enumerating every k-tuple of draws, and closed forms."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf.exact import voting
from exact_helpers import PROMPTS, T, fixed_reward, tiny_model


def brute_maj(probs, k):
    """maj@k by listing all k-tuples of classes (last class = no answer, class 0 = the right answer)."""
    none = len(probs) - 1
    total = 0.0
    for t in itertools.product(range(len(probs)), repeat=k):
        votes = np.bincount([c for c in t if c != none], minlength=none)
        if votes.sum() == 0:
            continue
        best = np.flatnonzero(votes == votes.max())
        if 0 in best:
            total += np.prod([probs[c] for c in t]) / len(best)
    return total


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maj_at_k_matches_enumerating_k_tuples(k, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(5) * (0.5 + seed))            # right, 3 wrong answers, no answer
    if seed == 2:
        probs[2] = 0.0
        probs /= probs.sum()
    got = voting.maj_at_k_from_probs(probs[0], probs[1:-1], probs[-1], k)
    assert abs(got - brute_maj(probs, k)) < 1e-12


def test_maj_at_k_closed_forms_and_large_k():
    # one answer only (no rival): maj@k = P(at least one answer) = 1 - p_none^k
    assert abs(voting.maj_at_k_from_probs(0.3, [], 0.7, 9) - (1 - 0.7 ** 9)) < 1e-12
    # k = 1 is the accuracy
    assert abs(voting.maj_at_k_from_probs(0.2, [0.5, 0.1], 0.2, 1) - 0.2) < 1e-14
    # large k: the plurality answer wins with probability -> 1, others -> 0; sums over answers stay <= 1
    p = np.array([0.5, 0.25, 0.05, 0.2])
    wins = [voting.maj_at_k_from_probs(p[i], np.delete(p[:3], i), p[3], 256) for i in range(3)]
    assert wins[0] > 0.99 and wins[1] < 0.01 and sum(wins) <= 1 + 1e-12
    assert abs(sum(wins) - (1 - 0.2 ** 256)) < 1e-10       # some answer always wins when anyone votes


def test_maj_at_k_over_an_enumeration_and_pass_at_k_curve():
    m = tiny_model(4)
    e = exact.enumerate_completions(m, PROMPTS, T)
    answers = (fixed_reward(e, 3, (-1, 0, 1, 2))).astype(int)
    right = np.array([0, 2])
    per, mean = voting.maj_at_k(e, answers, right, 3, 3)
    dist = voting.answer_distribution(e, answers, 3)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)
    for q in range(2):
        pr = np.concatenate([[dist[q, right[q]]], np.delete(dist[q, :3], right[q]), [dist[q, 3]]])
        assert abs(per[q] - brute_maj(pr, 3)) < 1e-12
    correct = (answers == right[e.prompt_index]).astype(float)
    curve = voting.pass_at_k_curve(e, correct, [1, 2, 3])
    for i, k in enumerate([1, 2, 3]):
        assert abs(curve[i] - exact.pass_at_k(e, correct, k)[1]) < 1e-14
    assert abs(voting.maj_at_k(e, answers, right, 3, 1)[1] - curve[0]) < 1e-14   # maj@1 = pass@1
