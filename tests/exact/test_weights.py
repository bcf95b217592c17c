"""exact.weights: the per-prompt weight w(p) = E[A | correct] - E[A | wrong] of every registered sequence-level
advantage estimator against brute force over all 2^G outcomes of a group, and the closed forms."""
from __future__ import annotations

from itertools import product

import numpy as np
import pytest

from toyrlhf.exact import weights as W
from toyrlhf.rl import advantages as adv

PS = np.array([0.0, 0.07, 0.3, 0.5, 0.81, 1.0])


def brute_force_weight(name, p, G, std="population", eps=1e-6):
    """Sum over every outcome vector b in {0,1}^G (a batch of one prompt): E[A_1 1{b_1 = v}] / P(b_1 = v)."""
    est = adv.ADVANTAGE_ESTIMATORS.lookup(name)
    hp = adv.AdvantageSettings(std=std, eps=eps)
    num, den = {1: 0.0, 0: 0.0}, {1: 0.0, 0: 0.0}
    for b in product((1.0, 0.0), repeat=G):
        b = np.array(b)
        k = int(b.sum())
        w = p ** k * (1 - p) ** (G - k)
        kw = {}
        if "lengths" in est.inputs:
            kw["lengths"] = np.ones(G)
        if "greedy_reward" in est.inputs:
            kw["greedy_reward"] = np.full(G, 1.0 if p >= 0.5 else 0.0)
        a = est.fn(b, G, hp, **kw)
        num[int(b[0])] += w * a[0]
        den[int(b[0])] += w
    return num[1] / den[1] - num[0] / den[0]


@pytest.mark.parametrize("G", [2, 3, 4, 6])
def test_every_registered_estimator_matches_brute_force(G):
    ps = PS[1:-1]                                        # brute force needs both outcomes to have mass
    weights, skipped = W.estimator_weights(ps, G)
    assert set(weights) | set(skipped) == set(W.sequence_estimators())
    assert {"rloo", "group", "group_mean"} <= set(weights)
    for name, w in weights.items():
        for p, wp in zip(ps, w):
            assert wp == pytest.approx(brute_force_weight(name, p, G), rel=1e-9, abs=1e-12), (name, p)
    # the sample std too
    w = W.prompt_weight("group", ps, G, std="sample")
    assert np.allclose(w, [brute_force_weight("group", p, G, std="sample") for p in ps], rtol=1e-9)


def test_engine_and_binomial_sum_agree():
    for name in ("group", "rloo", "group_mean", "passk", "reinforce"):
        for p in (0.05, 0.4, 0.9):
            assert W.prompt_weight(name, [p], 8)[0] == pytest.approx(W.prompt_weight_binomial(name, p, 8), rel=1e-9)


def test_closed_forms():
    G = 8
    assert np.allclose(W.prompt_weight("rloo", PS, G), 1.0)
    assert np.allclose(W.prompt_weight("group_mean", PS, G), (G - 1) / G)
    assert np.allclose(W.prompt_weight("reinforce", PS, G), (G - 1) / G)
    # GRPO G = 2 (population std): a mixed group has A = +-1, so w = P(peer differs) * 2 ... exactly 1 - p + p = 1
    assert np.allclose(W.prompt_weight("group", PS[1:-1], 2), 1.0, rtol=1e-5)
    # GRPO's large-G limit 1/sqrt(p(1-p)) (the O(1/G) correction is below 1% at G = 1000 for these p)
    ps = np.array([0.2, 0.5, 0.8])
    assert np.allclose(W.prompt_weight("group", ps, 1000), W.grpo_weight_limit(ps), rtol=1e-2)


def test_a_newly_registered_estimator_is_picked_up():
    @adv.ADVANTAGE_ESTIMATORS.register("_test_twice_rloo", paper="test", equation="A = 2 rloo")
    def _twice(rewards, G, hp):
        return 2 * adv.rloo_advantages(rewards, G)
    try:
        weights, _ = W.estimator_weights([0.3], 4)
        assert weights["_test_twice_rloo"] == pytest.approx(2.0)
    finally:
        adv.ADVANTAGE_ESTIMATORS.remove("_test_twice_rloo")
