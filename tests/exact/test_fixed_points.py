"""exact.fixed_points: the fixed points of each KL placement's expected update for a tabular prefix policy.
The tabular gradient against finite differences of the objectives it is the gradient of, stationarity (gradient 0)
at every solved point, the k1-in-reward point equal to pi* of optimum.py, and the k3 points differing from it."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from toyrlhf import exact
from toyrlhf.exact import fixed_points as F

from exact_helpers import PROMPTS, T, fixed_reward, tiny_model


@pytest.fixture(scope="module")
def setup():
    ref = exact.enumerate_completions(tiny_model(0), PROMPTS, T)
    return ref, fixed_reward(ref, 1), F.prefix_tree(ref)


def seq_logp_of(theta, ref, tree):
    """log pi(y) of the tabular prefix policy with logits theta (C,) on the (state, token) pairs."""
    lz = np.full(tree.n_states, -np.inf)
    lz = np.logaddexp.reduceat(theta[np.argsort(tree.child_state, kind="stable")],
                               np.searchsorted(np.sort(tree.child_state), np.arange(tree.n_states)))
    lc = theta - lz[tree.child_state]
    cm = ref.mask[:, ref.prompt_len:]
    tok = np.zeros(cm.shape)
    tok[cm] = lc[tree.child[cm]]
    return tok.sum(axis=1)


def objective(ref, r, beta, lp, which):
    p = np.exp(lp)
    er = np.bincount(ref.prompt_index, weights=p * r).mean()
    if which == "reverse":
        return er - beta * np.bincount(ref.prompt_index, weights=p * (lp - ref.seq_logp)).mean()
    return er - beta * np.bincount(ref.prompt_index, weights=ref.probs * (ref.seq_logp - lp)).mean()


@pytest.mark.parametrize("placement,which", [("k1_reward", "reverse"), ("k3_loss_sequence", "forward")])
def test_tabular_gradient_is_the_gradient_of_the_sequence_objective(setup, placement, which):
    ref, r, tree = setup
    beta = 0.7
    theta = np.random.default_rng(3).normal(size=len(tree.child_state))
    lp = seq_logp_of(theta, ref, tree)
    g = F.tabular_gradient(ref, r, beta, placement, lp, tree)
    h = 1e-6
    fd = np.array([(objective(ref, r, beta, seq_logp_of(theta + h * e, ref, tree), which)
                    - objective(ref, r, beta, seq_logp_of(theta - h * e, ref, tree), which)) / (2 * h)
                   for e in np.eye(len(theta))])
    assert np.allclose(g, fd, atol=1e-8)


def test_token_gradients_at_the_reference_are_the_reward_gradient(setup):
    """At pi = ref the k2/k3 token-loss terms vanish: the update is grad E[r] alone."""
    ref, r, tree = setup
    g0 = F.tabular_gradient(ref, r, 0.0, "k3_loss_token", ref.seq_logp, tree)
    for pl in ("k3_loss_token", "k2_loss_token"):
        assert np.allclose(F.tabular_gradient(ref, r, 0.9, pl, ref.seq_logp, tree), g0, atol=1e-14)
    assert np.linalg.norm(g0) > 1e-2


@pytest.mark.parametrize("beta", [0.05, 0.3, 1.0, 5.0])
def test_every_fixed_point_is_stationary_and_k1_gives_pi_star(setup, beta):
    ref, r, tree = setup
    star, _ = exact.optimal_policy(ref, r, beta)
    for pl in F.PLACEMENTS:
        lp = F.fixed_point(ref, r, beta, pl)
        sums = np.bincount(ref.prompt_index, weights=np.exp(lp))
        assert np.allclose(sums, 1.0, atol=1e-12)
        g = F.tabular_gradient(ref, r, beta, pl, lp, tree)
        assert np.linalg.norm(g) < 1e-10, (pl, np.linalg.norm(g))
        tv = exact.total_variation(ref.with_win_logp(ref.win_logp), lp)[1]   # TV(ref, point): it moved
        assert tv > 1e-3
    assert np.abs(np.exp(F.fixed_point(ref, r, beta, "k1_reward")) - np.exp(star)).max() < 1e-12
    rows = {fp.placement: fp for fp in F.compare_placements(ref, r, beta)}
    assert rows["k1_reward"].tv_to_optimum < 1e-12
    for pl in ("k3_loss_sequence", "k3_loss_token", "k2_loss_token"):
        assert rows[pl].tv_to_optimum > 1e-4
        assert rows[pl].objective < rows["k1_reward"].objective           # pi* maximises J


def test_k3_sequence_point_maximises_the_forward_kl_objective(setup):
    """pi = beta ref / (lambda - r) beats random policies on E[r] - beta KL(ref||pi) (a concave objective)."""
    ref, r, tree = setup
    beta = 0.4
    best = objective(ref, r, beta, F.fixed_point(ref, r, beta, "k3_loss_sequence"), "forward")
    rng = np.random.default_rng(0)
    base = F.fixed_point(ref, r, beta, "k3_loss_sequence")
    for _ in range(50):
        lp = base + rng.normal(0, 0.3, ref.n)
        for q in range(ref.n_prompts):
            sl = slice(ref.offsets[q], ref.offsets[q + 1])
            lp[sl] -= logsumexp(lp[sl])
        assert objective(ref, r, beta, lp, "forward") < best


def test_bad_arguments(setup):
    ref, r, _ = setup
    with pytest.raises(ValueError):
        F.fixed_point(ref, r, 0.0, "k1_reward")
    with pytest.raises(ValueError):
        F.fixed_point(ref, r, 1.0, "k1_loss")
