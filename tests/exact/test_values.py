"""The exact value function of the token-level MDP (toyrlhf/exact/values.py): V^pi(s_t) against a brute-force
recursion over prefixes through the model itself, its look-up on other rows, and GAE on exact values: its expected
policy gradient is grad E_pi[sum_t r_t] for every lambda, exactly, and a Monte-Carlo mean of sampled GAE gradients
(lambda = 1, gamma = 1) agrees with it (|z| <= 4)."""
from __future__ import annotations

import numpy as np
import pytest

from toyrlhf import exact
from toyrlhf import tokens as tk
from toyrlhf.rl import losses
from toyrlhf.rl.advantages import gae

from exact_helpers import PROMPTS, T, Z, fixed_reward, tiny_model

N_OUT = 3     # tiny_model's V=5: EOS and two words


def _kl(est, lp, lr):
    if est == "k1":
        return lp - lr
    return np.exp(lr - lp) - 1.0 - (lr - lp)          # k3 (Schulman 2020)


def _brute_values(model, ref, reward_of, beta, est, gamma):
    """V(q, prefix) by the Bellman recursion V(s) = sum_a pi(a|s) [r(s, a) + gamma V(s a)], the model's next-token
    distribution read directly (model.contexts + next_logprobs), memoised per prefix."""
    memo = {}
    P = PROMPTS.shape[1]

    def value(q, prefix):
        key = (q, prefix)
        if key in memo:
            return memo[key]
        tokens = np.full((1, P + T), tk.PAD, dtype=np.int64)
        tokens[0, :P] = PROMPTS[q]
        tokens[0, P:P + len(prefix)] = prefix
        X = model.contexts(tokens, np.array([0]), np.array([P + len(prefix) - 1]))
        lp, lr = model.next_logprobs(X)[0], ref.next_logprobs(X)[0]
        v = 0.0
        for j in range(N_OUT):
            y = prefix + (j + tk.OUT_OFFSET,)
            r = -beta * _kl(est, lp[j], lr[j]) if beta else 0.0
            done = y[-1] == tk.EOS or len(y) == T
            v += np.exp(lp[j]) * (r + (reward_of[(q, y)] if done else gamma * value(q, y)))
        memo[key] = v
        return v

    return value


def _setup(seed=0):
    model, ref = tiny_model(seed), tiny_model(seed + 10)
    enum = exact.enumerate_completions(model, PROMPTS, T)
    r = fixed_reward(enum, seed + 1)
    return model, ref, enum, r


def _reward_table(enum, r):
    out = {}
    for i in range(enum.n):
        comp = tuple(int(t) for t in enum.completions[i] if t != tk.PAD)
        out[(int(enum.prompt_index[i]), comp)] = r[i]
    return out


@pytest.mark.parametrize("beta,est,gamma", [(0.0, "k1", 1.0), (0.3, "k1", 1.0), (0.3, "k3", 1.0), (0.5, "k1", 0.9)])
def test_state_values_equal_the_bellman_recursion_over_every_prefix(beta, est, gamma):
    model, ref, enum, r = _setup()
    ref_enum = exact.rescore(ref, enum)
    pen = losses.kl_penalty_rewards(enum.logp, ref_enum.logp, enum.mask, beta, est) if beta else None
    sv = exact.state_values(enum, exact.mdp_token_rewards(enum, r, pen), gamma)
    value = _brute_values(model, ref, _reward_table(enum, r), beta, est, gamma)
    P = enum.prompt_len
    checked = 0
    for i in range(enum.n):
        comp = [int(t) for t in enum.completions[i]]
        for t in range(int(enum.lengths[i])):
            want = value(int(enum.prompt_index[i]), tuple(comp[:t]))
            assert abs(sv.on_enum[i, P + t] - want) < 1e-12, (i, t)
            checked += 1
    assert checked == int(enum.mask.sum())
    # V(s_0) = E[sum_t r_t] per prompt: E[r] - beta KL(pi||ref) with k1 and gamma = 1
    if est == "k1" and gamma == 1.0:
        v0 = sv.on_enum[enum.offsets[:-1], P]
        kl = exact.kl_divergences(enum, ref_enum)["reverse"]
        np.testing.assert_allclose(v0, exact.expectation(enum, r)[0] - beta * kl, atol=1e-12)


def test_a_table_looks_up_any_rows_of_its_prompts_and_refuses_others():
    _, _, enum, r = _setup(1)
    sv = exact.state_values(enum, exact.mdp_token_rewards(enum, r))
    perm = np.random.default_rng(0).permutation(enum.n)
    np.testing.assert_array_equal(sv(enum.tokens[perm], enum.mask[perm]), sv.on_enum[perm])
    other = enum.tokens[:2].copy()
    other[:, 1] = tk.BOS                                         # prompt [BOS, BOS]: not one of PROMPTS
    with pytest.raises(ValueError, match="prompt"):
        sv(other, enum.mask[:2])


def _gae_rows(enum, tr, sv, lam):
    adv, _ = gae(tr, sv.on_enum, enum.mask, 1.0, lam)
    return adv


@pytest.mark.parametrize("lam", [1.0, 0.95, 0.0])
def test_gae_on_exact_values_has_the_exact_policy_gradient_in_expectation_for_any_lambda(lam):
    """sum_q (1/n) sum_y pi(y|q) sum_t A_t(y) grad log pi(y_t|s_t) = grad_theta (1/n) sum_q E_pi[R | q] with
    R = sum_t r_t held fixed (the score-function gradient of the detached per-token rewards)."""
    model, ref, enum, r = _setup(2)
    ref_enum = exact.rescore(ref, enum)
    tr = exact.mdp_token_rewards(enum, r, losses.kl_penalty_rewards(enum.logp, ref_enum.logp, enum.mask, 0.4, "k1"))
    sv = exact.state_values(enum, tr)
    adv = _gae_rows(enum, tr, sv, lam)
    got = exact.grad_token_weights(model, enum, (enum.probs / enum.n_prompts)[:, None] * adv)
    want = exact.grad_expectation(model, enum, tr.sum(axis=1))
    assert np.max(np.abs(got - want)) < 1e-10 * np.max(np.abs(want))
    # the identity needs the exact V when lambda < 1: with V = 0 the expectation is another vector
    adv0, _ = gae(tr, np.zeros_like(tr), enum.mask, 1.0, lam)
    if lam < 1:
        off = exact.grad_token_weights(model, enum, (enum.probs / enum.n_prompts)[:, None] * adv0)
        assert np.max(np.abs(off - want)) > 1e-3 * np.max(np.abs(want))


def test_sampled_gae_gradients_on_exact_values_average_to_the_exact_policy_gradient():
    """4000 batches of one completion per prompt drawn from pi; each batch's gradient of (1/n) sum_q sum_t
    A_t grad log pi with GAE(lambda = 1, gamma = 1) on the exact values; the mean against grad E[R]:
    |z| <= 4 on the exact direction and two random unit directions (measured +0.74, +0.09, -0.42)."""
    model, ref, enum, r = _setup(3)
    ref_enum = exact.rescore(ref, enum)
    tr = exact.mdp_token_rewards(enum, r, losses.kl_penalty_rewards(enum.logp, ref_enum.logp, enum.mask, 0.2, "k1"))
    sv = exact.state_values(enum, tr)
    rng = np.random.default_rng(7)
    n, N = enum.n_prompts, enum.n
    draws = np.stack([rng.choice(np.arange(enum.offsets[q], enum.offsets[q + 1]), size=4000,
                                 p=enum.probs[enum.offsets[q]:enum.offsets[q + 1]] /
                                 enum.probs[enum.offsets[q]:enum.offsets[q + 1]].sum()) for q in range(n)], axis=1)
    # the sampled rows' advantages come from the table's look-up, as the trainer reads them
    values = sv(enum.tokens, enum.mask)
    adv, _ = gae(tr, values, enum.mask, 1.0, 1.0)
    per_row = np.stack([exact.grad_token_weights(model, enum, np.where(np.arange(N)[:, None] == i, adv, 0.0))
                        for i in range(N)])                  # (N, d): sum_t A_t grad log pi_t of row i
    G = per_row[draws].sum(axis=1) / n
    want = exact.grad_expectation(model, enum, tr.sum(axis=1))
    dirs = [want / np.linalg.norm(want)] + [d / np.linalg.norm(d) for d in rng.normal(size=(2, want.size))]
    for d in dirs:
        proj = G @ d
        z = (proj.mean() - want @ d) / (proj.std(ddof=1) / np.sqrt(len(proj)))
        assert abs(z) <= Z, z
